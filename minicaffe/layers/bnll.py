r"""BNLL: the binomial normal log likelihood (softplus), $y = \log(1 + e^x)$.

Caffe: `bnll_layer.cpp` / `.cu`. Device twin: `opencl/bnll.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.layer import register_layer
from minicaffe.layers.neuron import NeuronLayer

# Backward clamps x at this value before exponentiating (Caffe's kBNLL_THRESHOLD): e^50
# is about 5e21, still finite in float32, and e / (e + 1) is already 1 there; without the
# clamp e^x overflows past x = 88 and inf / inf is NaN.
BNLL_THRESHOLD = 50.0


@register_layer
class BNLLLayer(NeuronLayer):
    r"""Softplus, applied to each element (the name is Caffe's).

    $$ y = \log(1 + e^{x}) = \max(x, 0) + \log(1 + e^{-|x|}) \qquad
       \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}\,
       \frac{e^{\min(x, 50)}}{e^{\min(x, 50)} + 1} $$

    Forward uses the second form, which is Caffe's two branches in one expression
    ($x + \log(1 + e^{-x})$ for x > 0, $\log(1 + e^{x})$ otherwise): the exponent is never
    positive, so nothing overflows. `log1p` keeps tiny results accurate where Caffe's
    `log(1. + exp(x))` (in double) rounds 1 + e^x to 1 for x below about -37; the two
    differ there by less than 1e-16. The gradient is the logistic sigmoid of x, with x
    clamped at 50 as in Caffe so that e^x stays finite.

    Do not run in place: backward reads x from the bottom data, which in place holds y.
    Caffe does not refuse it, and neither does minicaffe, but the gradient is then
    $\sigma(y)$ instead of $\sigma(x)$.

    Bottom: x, any shape.   Top: y, the shape of x.

        layer { name: "bnll1" type: "BNLL" bottom: "conv1" top: "bnll1" }
    """

    type = "BNLL"

    def forward_cpu(self, bottom, top):
        x = bottom[0].cpu_data()
        top[0].mutable_cpu_data()[...] = np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            x, dy = bottom[0].cpu_data(), top[0].cpu_diff()
            e = np.exp(np.minimum(x, np.float32(BNLL_THRESHOLD)))
            bottom[0].mutable_cpu_diff()[...] = dy * e / (e + 1)

    def forward_gpu(self, bottom, top):
        opencl.kernel("bnll.cl", "bnll_forward")(
            bottom[0].count, bottom[0].gpu_data(), top[0].mutable_gpu_data())

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            opencl.kernel("bnll.cl", "bnll_backward")(
                bottom[0].count, top[0].gpu_diff(), bottom[0].gpu_data(),
                bottom[0].mutable_gpu_diff(), np.float32(BNLL_THRESHOLD))
