r"""Threshold: a step function, $y = [x > t]$.

Caffe: `threshold_layer.cpp` / `.cu`. Device twin: `opencl/threshold.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.common import MinicaffeError
from minicaffe.layer import register_layer
from minicaffe.layers.neuron import NeuronLayer


@register_layer
class ThresholdLayer(NeuronLayer):
    r"""1 where the input is above `threshold` (default 0), 0 elsewhere, per element.

    $$ y = \begin{cases} 1 & x > t \\ 0 & x \le t \end{cases} $$

    $x = t$ gives 0, and so does NaN (it is not above anything).

    No gradient: the derivative is 0 wherever it exists, so Caffe leaves Backward
    unimplemented and stops if it is ever called. Here backward raises a MinicaffeError
    naming the layer. A Net calls it only when something below learns and the loss
    depends on this top; `propagate_down: false` on the layer cuts that path.

    May run in place (`top` is `bottom`).

    Bottom: x, any shape.   Top: y, the shape of x, values 0 and 1.

        layer { name: "active" type: "Threshold" bottom: "score" top: "active"
                threshold_param { threshold: 0.5 } }
    """

    type = "Threshold"

    def forward_cpu(self, bottom, top):
        t = np.float32(self.layer_param.threshold_param.threshold)
        top[0].mutable_cpu_data()[...] = bottom[0].cpu_data() > t

    def backward_cpu(self, top, propagate_down, bottom):
        # Caffe's Backward is NOT_IMPLEMENTED whatever propagate_down says.
        raise MinicaffeError(
            f"{self.type} layer {self.name!r} has no backward (a step function has no useful "
            f"gradient; Caffe does not implement one): keep it off the path from the loss to "
            f"learnable layers, or give it `propagate_down: false`")

    backward_gpu = backward_cpu  # nothing to compute on either engine: only the error

    def forward_gpu(self, bottom, top):
        opencl.kernel("threshold.cl", "threshold_forward")(
            bottom[0].count, bottom[0].gpu_data(), top[0].mutable_gpu_data(),
            np.float32(self.layer_param.threshold_param.threshold))
