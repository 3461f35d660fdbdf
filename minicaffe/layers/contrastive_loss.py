r"""ContrastiveLoss: pulls similar pairs of feature vectors together and pushes dissimilar
pairs at least a margin apart (siamese networks).

Caffe's `contrastive_loss_layer.cpp` / `.cu`. Device twin: `opencl/contrastive_loss.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import register_layer
from minicaffe.layers.helpers import launch_total
from minicaffe.layers.loss import LossLayer

DIST_EPS = 1e-4  # keeps the gradient finite when a dissimilar pair coincides (d = 0)


@register_layer
class ContrastiveLossLayer(LossLayer):
    r"""The contrastive loss of Hadsell, Chopra and LeCun (2006), over N pairs.

    Pair $n$ has feature vectors $a_n$, $b_n$ (C values each), their distance
    $d_n = \lVert a_n - b_n \rVert_2$, and a similarity label $y_n$ (1: similar, 0:
    dissimilar; any value whose integer part is not 0 counts as similar). With margin $m$:

    $$ E = \frac{1}{2N} \sum_n \Big( y_n\, d_n^2 + (1 - y_n) \max(m - d_n,\ 0)^2 \Big) $$

    $$ \frac{\partial E}{\partial a_n} = -\frac{\partial E}{\partial b_n} = \frac{w}{N}
       \begin{cases} a_n - b_n & y_n = 1 \\
       -\dfrac{m - d_n}{d_n + 10^{-4}}\,(a_n - b_n) & y_n = 0,\ d_n < m \\
       0 & \text{otherwise} \end{cases} $$

    where $w$ is the loss weight (the top's diff). The $10^{-4}$ keeps the gradient
    finite when $d_n = 0$, as in Caffe.

    `legacy_version: true` keeps the form Caffe first shipped, which thresholds the
    *squared* distance, $(1 - y_n) \max(m - d_n^2,\ 0)$, with gradient
    $-\frac{w}{N}(a_n - b_n)$ for dissimilar pairs where $d_n^2 < m$.

    Both feature bottoms get a gradient (force_backward reaches them); the similarity
    labels never do.

    Bottoms: a and b of shape (N, C) or (N, C, 1, 1); y with N values, (N,) or (N, 1, 1, 1).
    Top: the scalar loss.

        layer { name: "loss" type: "ContrastiveLoss" bottom: "feat" bottom: "feat_p"
                bottom: "sim" top: "loss" contrastive_loss_param { margin: 1 } }
    """

    type = "ContrastiveLoss"
    exact_num_bottom_blobs = 3

    def layer_setup(self, bottom, top):
        param = self.layer_param.contrastive_loss_param
        self.margin, self.legacy = param.margin, param.legacy_version
        self.diff = Blob(name=f"{self.name}.diff")  # a - b, for backward
        self.dist_sq = Blob(name=f"{self.name}.dist_sq")  # d^2 per pair, for backward

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        a, b, y = bottom
        for blob in (a, b):
            if blob.count_range(2) != 1:
                raise MinicaffeError(
                    f"{self.type} layer {self.name!r}: features must be (N, C) or (N, C, 1, 1), "
                    f"bottom {blob.name!r} has shape {blob.shape}")
        if a.channels != b.channels:
            raise MinicaffeError(
                f"{self.type} layer {self.name!r}: both features need the same number of "
                f"channels, {a.name!r} has shape {a.shape} and {b.name!r} has shape {b.shape}")
        if y.count != a.num or y.num != a.num:
            raise MinicaffeError(
                f"{self.type} layer {self.name!r}: needs one similarity label per pair "
                f"({a.num}), bottom {y.name!r} has shape {y.shape}")
        self.diff.reshape(a.num, a.channels)
        self.dist_sq.reshape(a.num)

    def _similar(self, bottom):
        return bottom[2].cpu_data().reshape(-1).astype(np.int64) != 0  # truncated, as in Caffe

    def forward_cpu(self, bottom, top):
        d = self.diff.mutable_cpu_data()
        np.subtract(bottom[0].cpu_data().reshape(d.shape), bottom[1].cpu_data().reshape(d.shape),
                    out=d)
        dist_sq = self.dist_sq.mutable_cpu_data()
        dist_sq[...] = (d * d).sum(axis=1)
        if self.legacy:
            apart = np.maximum(self.margin - dist_sq, 0)
        else:
            apart = np.maximum(self.margin - np.sqrt(dist_sq), 0) ** 2
        loss = np.where(self._similar(bottom), dist_sq, apart).sum(dtype=np.float64)
        top[0].mutable_cpu_data()[...] = loss / bottom[0].num / 2

    def backward_cpu(self, top, propagate_down, bottom):
        # dE/da per pair is a multiple of a - b: the factor below (before alpha = +-w/N).
        dist_sq = self.dist_sq.cpu_data()
        if self.legacy:
            apart = np.where(self.margin - dist_sq > 0, -1.0, 0.0)
        else:
            dist = np.sqrt(dist_sq)
            shortfall = self.margin - dist
            apart = np.where(shortfall > 0, -shortfall / (dist + DIST_EPS), 0.0)
        factor = np.where(self._similar(bottom), 1.0, apart).astype(np.float32)[:, None]
        for i, sign in ((0, 1.0), (1, -1.0)):  # never the labels, bottom 2
            if propagate_down[i]:
                alpha = sign * float(top[0].cpu_diff()) / bottom[i].num
                bottom[i].mutable_cpu_diff()[...] = (alpha * factor * self.diff.cpu_data()).reshape(
                    bottom[i].shape)

    def forward_gpu(self, bottom, top):
        num = bottom[0].num
        opencl.sub(bottom[0].count, bottom[0].gpu_data(), bottom[1].gpu_data(),
                   self.diff.mutable_gpu_data())
        launch_total("contrastive_loss.cl", "contrastive_loss_forward", num, self.diff.gpu_data(),
                     bottom[2].gpu_data(), np.int32(bottom[0].channels), np.float32(self.margin),
                     np.int32(self.legacy), np.float32(1 / num / 2),
                     self.dist_sq.mutable_gpu_data(), top[0].mutable_gpu_data())

    def backward_gpu(self, top, propagate_down, bottom):
        for i, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[i]:
                opencl.kernel("contrastive_loss.cl", "contrastive_loss_backward")(
                    bottom[i].count, self.diff.gpu_data(), self.dist_sq.gpu_data(),
                    bottom[2].gpu_data(), np.int32(bottom[0].channels), np.float32(self.margin),
                    np.int32(self.legacy), np.float32(sign / bottom[i].num), top[0].gpu_diff(),
                    bottom[i].mutable_gpu_diff())

    def allow_force_backward(self, bottom_index):
        return bottom_index != 2
