r"""EuclideanLoss: half the mean squared distance between two batches of vectors.

Caffe's `euclidean_loss_layer.cpp`, the loss for regression. With N the batch size
(the first axis) and $d = a - b$:

$$ E = \frac{1}{2N} \sum_n \lVert a_n - b_n \rVert_2^2, \qquad
   \frac{\partial E}{\partial a} = \frac{w}{N} d, \qquad
   \frac{\partial E}{\partial b} = -\frac{w}{N} d $$

where w is the loss weight (the top's diff). Unlike most losses both bottoms may take a
gradient (either can be a prediction), so force_backward reaches both.

Bottoms: a and b, the same batch size and the same number of values per item (shapes
may differ otherwise, e.g. (N, 10) and (N, 10, 1, 1)).   Top: the scalar loss.

    layer { name: "loss" type: "EuclideanLoss" bottom: "pred" bottom: "target" top: "loss" }

Device twin: `opencl/euclidean_loss.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import register_layer
from minicaffe.layers.helpers import launch_total
from minicaffe.layers.loss import LossLayer


@register_layer
class EuclideanLossLayer(LossLayer):
    """Sum of squared differences / 2N; see the module docstring."""

    type = "EuclideanLoss"

    def layer_setup(self, bottom, top):
        self.diff = Blob(name=f"{self.name}.diff")  # a - b, kept for backward (Caffe's diff_)

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if bottom[0].count_range(1) != bottom[1].count_range(1):
            raise MinicaffeError(
                f"EuclideanLoss layer {self.name!r}: inputs must have the same dimension; "
                f"{bottom[0].name!r} has shape {bottom[0].shape}, {bottom[1].name!r} has "
                f"shape {bottom[1].shape}")
        self.diff.reshape_like(bottom[0])

    def forward_cpu(self, bottom, top):
        d = self.diff.mutable_cpu_data()
        np.subtract(bottom[0].cpu_data(), bottom[1].cpu_data().reshape(d.shape), out=d)
        top[0].mutable_cpu_data()[...] = np.dot(d.ravel(), d.ravel()) / bottom[0].num / 2

    def backward_cpu(self, top, propagate_down, bottom):
        for i, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[i]:
                alpha = sign * float(top[0].cpu_diff()) / bottom[i].num
                bottom[i].mutable_cpu_diff()[...] = (alpha * self.diff.cpu_data()).reshape(
                    bottom[i].shape)

    def forward_gpu(self, bottom, top):
        count = bottom[0].count
        opencl.sub(count, bottom[0].gpu_data(), bottom[1].gpu_data(), self.diff.mutable_gpu_data())
        launch_total("euclidean_loss.cl", "euclidean_loss_forward", count, self.diff.gpu_data(),
                     np.float32(1 / bottom[0].num / 2), top[0].mutable_gpu_data())

    def backward_gpu(self, top, propagate_down, bottom):
        for i, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[i]:
                opencl.kernel("euclidean_loss.cl", "euclidean_loss_backward")(
                    bottom[i].count, np.float32(sign / bottom[i].num), top[0].gpu_diff(),
                    self.diff.gpu_data(), bottom[i].mutable_gpu_diff())

    def allow_force_backward(self, bottom_index):
        return True
