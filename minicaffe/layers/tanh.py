r"""TanH: the hyperbolic tangent, $y = \tanh(x)$.

Caffe: `tanh_layer.cpp` / `.cu`. Device twin: `opencl/tanh.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.layer import register_layer
from minicaffe.layers.neuron import NeuronLayer


@register_layer
class TanHLayer(NeuronLayer):
    r"""The hyperbolic tangent, applied to each element.

    $$ y = \tanh(x) = \frac{e^{x} - e^{-x}}{e^{x} + e^{-x}} \qquad
       \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}\, (1 - y^2) $$

    May run in place (`top` is `bottom`): backward needs only y, the top data.

    Bottom: x, any shape.   Top: y, the shape of x.

        layer { name: "tanh1" type: "TanH" bottom: "ip1" top: "ip1" }
    """

    type = "TanH"

    def forward_cpu(self, bottom, top):
        top[0].mutable_cpu_data()[...] = np.tanh(bottom[0].cpu_data())

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            y, dy = top[0].cpu_data(), top[0].cpu_diff()
            bottom[0].mutable_cpu_diff()[...] = dy * (1 - y * y)

    def forward_gpu(self, bottom, top):
        opencl.kernel("tanh.cl", "tanh_forward")(
            bottom[0].count, bottom[0].gpu_data(), top[0].mutable_gpu_data())

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            opencl.kernel("tanh.cl", "tanh_backward")(
                bottom[0].count, top[0].gpu_diff(), top[0].gpu_data(), bottom[0].mutable_gpu_diff())
