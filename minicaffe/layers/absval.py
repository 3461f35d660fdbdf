r"""AbsVal: the absolute value, $y = |x|$.

Caffe: `absval_layer.cpp` / `.cu`. Device twin: `opencl/absval.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.common import MinicaffeError
from minicaffe.layer import register_layer
from minicaffe.layers.neuron import NeuronLayer


@register_layer
class AbsValLayer(NeuronLayer):
    r"""The absolute value, applied to each element.

    $$ y = |x| \qquad
       \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}\, \operatorname{sign}(x),
       \quad \operatorname{sign}(0) = 0 $$

    At the kink x = 0 the gradient is 0 (the sign of 0), as in Caffe.

    Never in place: backward needs the sign of x, and |x| has lost it. Setting up with
    `top` the same blob as `bottom` is an error, as in Caffe.

    Bottom: x, any shape.   Top: y, the shape of x.

        layer { name: "abs1" type: "AbsVal" bottom: "conv1" top: "abs1" }
    """

    type = "AbsVal"

    def layer_setup(self, bottom, top):
        if top[0] is bottom[0]:
            raise MinicaffeError(f"{self.type} layer {self.name!r}: cannot run in place (top "
                                 f"{top[0].name!r} is its bottom): backward needs the sign of "
                                 f"the input, which |x| overwrites; give the top another name")

    def forward_cpu(self, bottom, top):
        top[0].mutable_cpu_data()[...] = np.abs(bottom[0].cpu_data())

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            x, dy = bottom[0].cpu_data(), top[0].cpu_diff()
            # Caffe's sign, (x > 0) - (x < 0): 0 at 0, and 0 for NaN too (np.sign gives NaN).
            sign = (x > 0).astype(x.dtype) - (x < 0)
            bottom[0].mutable_cpu_diff()[...] = dy * sign

    def forward_gpu(self, bottom, top):
        opencl.kernel("absval.cl", "absval_forward")(
            bottom[0].count, bottom[0].gpu_data(), top[0].mutable_gpu_data())

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            opencl.kernel("absval.cl", "absval_backward")(
                bottom[0].count, top[0].gpu_diff(), bottom[0].gpu_data(), bottom[0].mutable_gpu_diff())
