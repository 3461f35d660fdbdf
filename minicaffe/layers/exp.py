r"""Exp: the power $y = \gamma^{\alpha x + \beta}$ of a base $\gamma$ (default e).

Caffe: `exp_layer.cpp` / `.cu`. Device twin: `opencl/exp.cl`.
"""
import math

import numpy as np

from minicaffe import opencl
from minicaffe.common import MinicaffeError
from minicaffe.layer import register_layer
from minicaffe.layers.neuron import NeuronLayer


@register_layer
class ExpLayer(NeuronLayer):
    r"""Raises a base to an affine function of each element: $\gamma$ = `base`,
    $\alpha$ = `scale`, $\beta$ = `shift`.

    $$ y = \gamma^{\alpha x + \beta} = \underbrace{\gamma^{\beta}}_{\text{outer}}\,
           e^{\,\overbrace{\alpha \ln\gamma}^{\text{inner}}\, x} \qquad
       \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}\, y\, \alpha \ln\gamma $$

    `base: -1` (the default) stands for e, so $\ln\gamma = 1$; any other base must be
    positive and finite, as Caffe checks. Like Caffe, the layer folds the parameters into
    two constants once, at setup: the inner scale $\alpha \ln\gamma$ and the outer scale
    $\gamma^\beta$ (1 when $\beta = 0$), both in float32, so forward is one exponential and
    one product. Base 1 or scale 0 give the constant $\gamma^\beta$ with gradient 0.

    May run in place (`top` is `bottom`): backward needs only y, the top data.

    Bottom: x, any shape.   Top: y, the shape of x.

        layer { name: "exp1" type: "Exp" bottom: "ip1" top: "exp1"
                exp_param { base: 2 scale: 3 shift: 1 } }
    """

    type = "Exp"

    def layer_setup(self, bottom, top):
        param = self.layer_param.exp_param
        base, scale, shift = param.base, param.scale, param.shift
        if base != -1 and not 0 < base < math.inf:  # also refuses NaN
            raise MinicaffeError(f"{self.type} layer {self.name!r}: exp_param base must be "
                                 f"positive and finite, or -1 for e; got {base}")
        log_base = 1.0 if base == -1 else math.log(base)
        self.inner_scale = np.float32(np.float32(log_base) * np.float32(scale))
        if shift == 0:
            self.outer_scale = np.float32(1)
        else:
            # A shift large enough to overflow gives inf, as Caffe's float pow/exp would.
            with np.errstate(over="ignore"):
                power = np.exp(np.float64(shift)) if base == -1 else np.power(np.float64(base), shift)
                self.outer_scale = np.float32(power)

    def forward_cpu(self, bottom, top):
        x = bottom[0].cpu_data()
        top[0].mutable_cpu_data()[...] = self.outer_scale * np.exp(self.inner_scale * x)

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            y, dy = top[0].cpu_data(), top[0].cpu_diff()
            bottom[0].mutable_cpu_diff()[...] = dy * y * self.inner_scale

    def forward_gpu(self, bottom, top):
        opencl.kernel("exp.cl", "exp_forward")(
            bottom[0].count, bottom[0].gpu_data(), top[0].mutable_gpu_data(),
            self.inner_scale, self.outer_scale)

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            opencl.kernel("exp.cl", "exp_backward")(
                bottom[0].count, top[0].gpu_diff(), top[0].gpu_data(), bottom[0].mutable_gpu_diff(),
                self.inner_scale)
