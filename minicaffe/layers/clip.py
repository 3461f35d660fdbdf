r"""Clip: clamp each element into $[\text{min}, \text{max}]$.

Caffe: `clip_layer.cpp` / `.cu`. Device twin: `opencl/clip.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.common import MinicaffeError
from minicaffe.layer import register_layer
from minicaffe.layers.neuron import NeuronLayer


@register_layer
class ClipLayer(NeuronLayer):
    r"""Clamps each element into $[a, b]$, $a$ = `min`, $b$ = `max` (both must be given).

    $$ y = \max(a, \min(x, b)) \qquad
       \frac{\partial E}{\partial x} = \begin{cases}
         \frac{\partial E}{\partial y} & a \le x \le b \\ 0 & \text{otherwise} \end{cases} $$

    The gradient passes at the bounds themselves (x = a or x = b), as in Caffe. The
    order of min and max is Caffe's: with a > b every output is a (and every gradient
    0), which Caffe does not check either. A NaN input stays NaN on both engines (Caffe's
    engines disagree there: its CPU code returns min, its GPU code max).

    `min` and `max` are required fields in Caffe's schema (a prototxt without them does
    not parse there); minicaffe's schema keeps every field optional, so the layer checks
    that both are set.

    Do not run in place: backward tests x against the bounds, and in place the bottom
    holds y, which always lies inside them, so every gradient would pass. Caffe does not
    refuse it, and neither does minicaffe.

    Bottom: x, any shape.   Top: y, the shape of x.

        layer { name: "clip1" type: "Clip" bottom: "ip1" top: "clip1"
                clip_param { min: -1 max: 1 } }
    """

    type = "Clip"

    def layer_setup(self, bottom, top):
        param = self.layer_param.clip_param
        missing = [f for f in ("min", "max") if not param.HasField(f)]
        if missing:
            raise MinicaffeError(f"{self.type} layer {self.name!r}: clip_param needs both min and "
                                 f"max (Caffe requires them); {' and '.join(missing)} not given")
        self.min, self.max = np.float32(param.min), np.float32(param.max)

    def forward_cpu(self, bottom, top):
        x = bottom[0].cpu_data()
        # Not np.clip: its order differs when min > max (it would give max).
        top[0].mutable_cpu_data()[...] = np.maximum(self.min, np.minimum(x, self.max))

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            x, dy = bottom[0].cpu_data(), top[0].cpu_diff()
            bottom[0].mutable_cpu_diff()[...] = dy * ((x >= self.min) & (x <= self.max))

    def forward_gpu(self, bottom, top):
        opencl.kernel("clip.cl", "clip_forward")(
            bottom[0].count, bottom[0].gpu_data(), top[0].mutable_gpu_data(), self.min, self.max)

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            opencl.kernel("clip.cl", "clip_backward")(
                bottom[0].count, top[0].gpu_diff(), bottom[0].gpu_data(),
                bottom[0].mutable_gpu_diff(), self.min, self.max)
