r"""ELU: the exponential linear unit, $y = x$ for x > 0, $\alpha (e^x - 1)$ otherwise.

Caffe: `elu_layer.cpp` / `.cu`. Device twin: `opencl/elu.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.layer import register_layer
from minicaffe.layers.neuron import NeuronLayer


@register_layer
class ELULayer(NeuronLayer):
    r"""Exponential linear unit, applied to each element; $\alpha$ is `alpha` (default 1).

    $$ y = \begin{cases} x & x > 0 \\ \alpha (e^{x} - 1) & x \le 0 \end{cases} \qquad
       \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}
       \begin{cases} 1 & x > 0 \\ y + \alpha & x \le 0 \end{cases} $$

    On the negative side the derivative $\alpha e^{x}$ is computed as $y + \alpha$ from
    the top data, as Caffe does. At x = 0 it is the negative side's, $\alpha$. With
    $\alpha = 0$ this is the ReLU.

    May run in place (`top` is `bottom`): backward reads the sign of x from the bottom
    data, which in place is y, and y > 0 exactly where x > 0 as long as $\alpha \ge 0$.
    With $\alpha < 0$ in place the gradient is wrong, as in Caffe: don't do that.

    Bottom: x, any shape.   Top: y, the shape of x.

        layer { name: "elu1" type: "ELU" bottom: "conv1" top: "conv1"
                elu_param { alpha: 1.0 } }
    """

    type = "ELU"

    def forward_cpu(self, bottom, top):
        x, alpha = bottom[0].cpu_data(), np.float32(self.layer_param.elu_param.alpha)
        # exp of min(x, 0), not of x: the positive side never overflows into the sum.
        top[0].mutable_cpu_data()[...] = np.maximum(x, 0) + alpha * (np.exp(np.minimum(x, 0)) - 1)

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            x, y, dy = bottom[0].cpu_data(), top[0].cpu_data(), top[0].cpu_diff()
            alpha = np.float32(self.layer_param.elu_param.alpha)
            bottom[0].mutable_cpu_diff()[...] = dy * np.where(x > 0, 1, y + alpha)

    def forward_gpu(self, bottom, top):
        opencl.kernel("elu.cl", "elu_forward")(
            bottom[0].count, bottom[0].gpu_data(), top[0].mutable_gpu_data(),
            np.float32(self.layer_param.elu_param.alpha))

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            opencl.kernel("elu.cl", "elu_backward")(
                bottom[0].count, top[0].gpu_diff(), top[0].gpu_data(), bottom[0].gpu_data(),
                bottom[0].mutable_gpu_diff(), np.float32(self.layer_param.elu_param.alpha))
