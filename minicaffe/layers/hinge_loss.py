r"""HingeLoss: the one-versus-all hinge (SVM) loss, L1 or squared (L2).

Caffe's `hinge_loss_layer.cpp` (Caffe has no GPU version; ours runs on the device too).
Device twin: `opencl/hinge_loss.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import register_layer
from minicaffe.layers.helpers import launch_total, read_labels
from minicaffe.layers.loss import LossLayer
from minicaffe.proto import caffe_pb2

L1, L2 = caffe_pb2.HingeLossParameter.L1, caffe_pb2.HingeLossParameter.L2


@register_layer
class HingeLossLayer(LossLayer):
    r"""One-versus-all hinge loss over D scores per item, with the true class's sign flipped.

    Each item $n$ of the batch of $N$ has scores $x_{nk}$, $k < D$, and a label $l_n$.
    Every class is a binary problem whose target is $+1$ for the true class and $-1$
    otherwise: $\delta_{nk} = +1$ if $k = l_n$ else $-1$. The margins are

    $$ h_{nk} = \max(0,\ 1 - \delta_{nk} x_{nk}) $$

    $$ E_{L1} = \frac{1}{N} \sum_{n,k} h_{nk}, \qquad
       E_{L2} = \frac{1}{N} \sum_{n,k} h_{nk}^2 $$

    $$ \frac{\partial E_{L1}}{\partial x_{nk}} = -\frac{w}{N}\, \delta_{nk} [h_{nk} > 0], \qquad
       \frac{\partial E_{L2}}{\partial x_{nk}} = -\frac{2w}{N}\, \delta_{nk} h_{nk} $$

    where $w$ is the loss weight (the top's diff). The true class is penalised when its
    score is below 1, every other class when its score is above -1. `hinge_loss_param.norm`
    picks L1 (the default) or L2; the loss is always divided by the batch size (this
    layer reads no `loss_param`). At $h = 0$ the L1 gradient is taken as 0 (Caffe's sign
    of 0).

    Labels carry no gradient: asking for one is an error.

    Bottoms: scores of shape (N, D, ...) (D = everything after the first axis); labels,
    one per item (N values), integers in [0, D).   Top: the scalar loss.

        layer { name: "loss" type: "HingeLoss" bottom: "ip2" bottom: "label"
                hinge_loss_param { norm: L2 } }
    """

    type = "HingeLoss"

    def layer_setup(self, bottom, top):
        self.norm = self.layer_param.hinge_loss_param.norm
        self.margins = Blob(name=f"{self.name}.margins")  # h, kept for backward

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.num = bottom[0].num
        self.dim = bottom[0].count // self.num
        if bottom[1].count != self.num:
            raise MinicaffeError(
                f"{self.type} layer {self.name!r}: needs one label per item ({self.num}), "
                f"label blob {bottom[1].name!r} of shape {bottom[1].shape} has {bottom[1].count}")
        self.margins.reshape(self.num, self.dim)

    def _signs(self, bottom):
        """delta: +1 at each item's true class, -1 elsewhere (labels checked on the way)."""
        label, _ = read_labels(self, (self.num, self.dim), bottom[1].cpu_data(), 1, None)
        delta = -np.ones((self.num, self.dim), dtype=np.float32)
        delta[np.arange(self.num), label[:, 0]] = 1
        return delta

    def forward_cpu(self, bottom, top):
        x = bottom[0].cpu_data().reshape(self.num, self.dim)
        h = self.margins.mutable_cpu_data()
        np.maximum(0, 1 - self._signs(bottom) * x, out=h)
        total = h.sum(dtype=np.float64) if self.norm == L1 else np.dot(h.ravel(), h.ravel())
        top[0].mutable_cpu_data()[...] = total / self.num

    def backward_cpu(self, top, propagate_down, bottom):
        self._refuse_labels(propagate_down, bottom)
        if not propagate_down[0]:
            return
        h = self.margins.cpu_data()
        w = float(top[0].cpu_diff())
        if self.norm == L1:
            diff = -w / self.num * self._signs(bottom) * (h > 0)
        else:
            diff = -2 * w / self.num * self._signs(bottom) * h
        bottom[0].mutable_cpu_diff()[...] = diff.reshape(bottom[0].shape)

    def _refuse_labels(self, propagate_down, bottom):
        if propagate_down[1]:
            raise MinicaffeError(f"{self.type} layer {self.name!r} cannot backpropagate to "
                                 f"label inputs (bottom {bottom[1].name!r})")

    # ---- device: labels are checked on the host (they come from a data layer there)
    def forward_gpu(self, bottom, top):
        read_labels(self, (self.num, self.dim), bottom[1].cpu_data(), 1, None)
        count = self.num * self.dim
        opencl.kernel("hinge_loss.cl", "hinge_loss_margins")(
            count, bottom[0].gpu_data(), bottom[1].gpu_data(), np.int32(self.dim),
            self.margins.mutable_gpu_data())
        launch_total("hinge_loss.cl", "hinge_loss_total", count, self.margins.gpu_data(),
                     np.int32(self.norm == L2), np.float32(1 / self.num),
                     top[0].mutable_gpu_data())

    def backward_gpu(self, top, propagate_down, bottom):
        self._refuse_labels(propagate_down, bottom)
        if not propagate_down[0]:
            return
        alpha = (-2 if self.norm == L2 else -1) / self.num
        opencl.kernel("hinge_loss.cl", "hinge_loss_backward")(
            bottom[0].count, self.margins.gpu_data(), bottom[1].gpu_data(), np.int32(self.dim),
            np.int32(self.norm == L2), np.float32(alpha), top[0].gpu_diff(),
            bottom[0].mutable_gpu_diff())
