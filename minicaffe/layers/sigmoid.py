r"""Sigmoid: the logistic function, $y = 1 / (1 + e^{-x})$.

Caffe: `sigmoid_layer.cpp` / `.cu`. Device twin: `opencl/sigmoid.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.layer import register_layer
from minicaffe.layers.neuron import NeuronLayer


@register_layer
class SigmoidLayer(NeuronLayer):
    r"""The logistic sigmoid, applied to each element.

    $$ y = \sigma(x) = \frac{1}{1 + e^{-x}} = \tfrac12 \tanh(\tfrac12 x) + \tfrac12 \qquad
       \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}\, y (1 - y) $$

    Forward uses the tanh form, as Caffe does: it never overflows (`exp(-x)` does for
    x < -88 in float32).

    May run in place (`top` is `bottom`): backward needs only y, the top data.

    Bottom: x, any shape.   Top: y, the shape of x.

        layer { name: "sig1" type: "Sigmoid" bottom: "ip1" top: "ip1" }
    """

    type = "Sigmoid"

    def forward_cpu(self, bottom, top):
        x = bottom[0].cpu_data()
        top[0].mutable_cpu_data()[...] = 0.5 * np.tanh(0.5 * x) + 0.5

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            y, dy = top[0].cpu_data(), top[0].cpu_diff()
            bottom[0].mutable_cpu_diff()[...] = dy * y * (1 - y)

    def forward_gpu(self, bottom, top):
        opencl.kernel("sigmoid.cl", "sigmoid_forward")(
            bottom[0].count, bottom[0].gpu_data(), top[0].mutable_gpu_data())

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            opencl.kernel("sigmoid.cl", "sigmoid_backward")(
                bottom[0].count, top[0].gpu_diff(), top[0].gpu_data(), bottom[0].mutable_gpu_diff())
