r"""Swish: the input times its sigmoid, $y = x\,\sigma(\beta x)$.

Caffe: `swish_layer.cpp` / `.cu`. Device twin: `opencl/swish.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.blob import Blob
from minicaffe.layer import register_layer
from minicaffe.layers.neuron import NeuronLayer


@register_layer
class SwishLayer(NeuronLayer):
    r"""Swish (Ramachandran et al., 2017), per element, with $\beta$ = `beta` (default 1).

    $$ y = x\,\sigma(\beta x), \quad \sigma(z) = \tfrac12 \tanh(\tfrac12 z) + \tfrac12 \qquad
       \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}
       \big(\beta y + \sigma(\beta x)\,(1 - \beta y)\big) $$

    (the derivative $\sigma + \beta x \sigma (1 - \sigma)$, written with $y = x\sigma$).
    $\beta = 0$ gives $y = x/2$; a large $\beta$ approaches ReLU.

    Caffe runs an inner Sigmoid layer on $\beta x$ and keeps its output for backward. This
    layer computes the same sigmoid, with the same tanh form (it never overflows) and the
    same float32 steps, in one pass, and keeps it in a blob of its own, so the values are
    Sigmoid's bit for bit.

    May run in place (`top` is `bottom`): backward needs only y and the kept sigmoid.

    Bottom: x, any shape.   Top: y, the shape of x.

        layer { name: "swish1" type: "Swish" bottom: "conv1" top: "conv1"
                swish_param { beta: 1.5 } }
    """

    type = "Swish"

    def layer_setup(self, bottom, top):
        self.beta = np.float32(self.layer_param.swish_param.beta)
        self.sigmoid = Blob(name=f"{self.name}.sigmoid")  # sigma(beta x), for backward

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.sigmoid.reshape_like(bottom[0])

    def forward_cpu(self, bottom, top):
        x = bottom[0].cpu_data()
        s = self.sigmoid.mutable_cpu_data()
        s[...] = 0.5 * np.tanh(0.5 * (x * self.beta)) + 0.5
        top[0].mutable_cpu_data()[...] = x * s

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            y, dy, s = top[0].cpu_data(), top[0].cpu_diff(), self.sigmoid.cpu_data()
            by = self.beta * y
            bottom[0].mutable_cpu_diff()[...] = dy * (by + s * (1 - by))

    def forward_gpu(self, bottom, top):
        opencl.kernel("swish.cl", "swish_forward")(
            bottom[0].count, bottom[0].gpu_data(), top[0].mutable_gpu_data(),
            self.sigmoid.mutable_gpu_data(), self.beta)

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            opencl.kernel("swish.cl", "swish_backward")(
                bottom[0].count, top[0].gpu_diff(), top[0].gpu_data(), self.sigmoid.gpu_data(),
                bottom[0].mutable_gpu_diff(), self.beta)
