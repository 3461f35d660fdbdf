r"""Softmax: turn scores along one axis into probabilities.

Caffe's `softmax_layer.cpp`. Along `softmax_param.axis` (default 1, the channels),
for every position of the other axes:

$$ y_k = \frac{e^{x_k - m}}{\sum_j e^{x_j - m}}, \qquad m = \max_j x_j $$

Subtracting the max changes nothing mathematically but keeps $e^{x}$ from overflowing.

Backward (the Jacobian of softmax is $\operatorname{diag}(y) - y y^\top$):

$$ \frac{\partial E}{\partial x_k} = y_k \left( \frac{\partial E}{\partial y_k}
   - \sum_j \frac{\partial E}{\partial y_j} y_j \right) $$

Bottom: x, any shape.   Top: y, the shape of x.

    layer { name: "prob" type: "Softmax" bottom: "ip2" top: "prob" }

Device twin: `opencl/softmax.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.layer import Layer, register_layer


@register_layer
class SoftmaxLayer(Layer):
    """Softmax along `softmax_param.axis`; see the module docstring for the maths."""

    type = "Softmax"
    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def reshape(self, bottom, top):
        self.axis = bottom[0].canonical_axis_index(self.layer_param.softmax_param.axis)
        self.outer_num = bottom[0].count_range(0, self.axis)
        self.inner_num = bottom[0].count_range(self.axis + 1)
        top[0].reshape_like(bottom[0])

    def forward_cpu(self, bottom, top):
        x = bottom[0].cpu_data()
        y = top[0].mutable_cpu_data()
        np.subtract(x, x.max(axis=self.axis, keepdims=True), out=y)
        np.exp(y, out=y)
        y /= y.sum(axis=self.axis, keepdims=True)

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            y, dy = top[0].cpu_data(), top[0].cpu_diff()
            bottom[0].mutable_cpu_diff()[...] = y * (dy - (dy * y).sum(axis=self.axis, keepdims=True))

    def forward_gpu(self, bottom, top):
        channels = bottom[0].shape[self.axis]
        opencl.kernel("softmax.cl", "softmax_forward")(
            self.outer_num * self.inner_num, bottom[0].gpu_data(), top[0].mutable_gpu_data(),
            np.int32(channels), np.int32(self.inner_num))

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            channels = top[0].shape[self.axis]
            opencl.kernel("softmax.cl", "softmax_backward")(
                self.outer_num * self.inner_num, top[0].gpu_data(), top[0].gpu_diff(),
                bottom[0].mutable_gpu_diff(), np.int32(channels), np.int32(self.inner_num))
