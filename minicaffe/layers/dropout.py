r"""Dropout: zero a random fraction of the inputs while training, scale up the rest.

Caffe: `dropout_layer.cpp`. Device twin (to come): `opencl/dropout.cl`.
"""
import numpy as np

from minicaffe import common
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import register_layer
from minicaffe.layers.neuron import NeuronLayer
from minicaffe.proto import caffe_pb2


@register_layer
class DropoutLayer(NeuronLayer):
    r"""Inverted dropout with ratio $p$ (`dropout_ratio`, default 0.5).

    In the TRAIN phase each element gets its own keep mask $m \sim \text{Bernoulli}(1 - p)$,
    drawn from `minicaffe.common.rng()`, and the kept values are scaled by $1/(1-p)$ so
    that $\mathbb{E}[y] = x$; the TEST phase is then the identity, with nothing to rescale:

    $$ \text{TRAIN:}\quad y = \frac{m\,x}{1-p}, \qquad
       \frac{\partial E}{\partial x} = \frac{m}{1-p}\,\frac{\partial E}{\partial y}
       \qquad\qquad \text{TEST:}\quad y = x, \qquad
       \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y} $$

    The phase is `layer_param.phase`, which the Net sets. The mask is kept in
    `self.rand_vec` (a Blob of 0s and 1s, Caffe's `rand_vec_`) between forward and
    backward, so the layer may run in place (`top` is `bottom`): backward needs only the
    mask and the top diff.

    $p$ must lie in $[0, 1)$. (Caffe asserts $0 < p < 1$ in debug builds only; release
    Caffe accepts $p = 0$, which keeps everything, and so do we. $p = 1$ would divide by 0.)

    Bottom: x, any shape.   Top: y, the shape of x.

        layer { name: "drop6" type: "Dropout" bottom: "fc6" top: "fc6"
                dropout_param { dropout_ratio: 0.5 } }
    """

    type = "Dropout"

    def layer_setup(self, bottom, top):
        ratio = self.layer_param.dropout_param.dropout_ratio
        if not 0.0 <= ratio < 1.0:
            raise MinicaffeError(f"{self.type} layer {self.name!r}: dropout_ratio must be in "
                                 f"[0, 1), got {ratio}")
        self.threshold = ratio
        self.scale = 1.0 / (1.0 - ratio)
        self.rand_vec = Blob(name=f"{self.name}.rand_vec")

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.rand_vec.reshape_like(bottom[0])

    def forward_cpu(self, bottom, top):
        x = bottom[0].cpu_data()
        if self.layer_param.phase == caffe_pb2.TRAIN:
            mask = self.rand_vec.mutable_cpu_data()
            mask[...] = common.rng().random(mask.shape) < 1.0 - self.threshold
            top[0].mutable_cpu_data()[...] = x * mask * np.float32(self.scale)
        elif top[0] is not bottom[0]:
            top[0].mutable_cpu_data()[...] = x

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy = top[0].cpu_diff()
        if self.layer_param.phase == caffe_pb2.TRAIN:
            mask = self.rand_vec.cpu_data()
            bottom[0].mutable_cpu_diff()[...] = dy * mask * np.float32(self.scale)
        elif top[0] is not bottom[0]:
            bottom[0].mutable_cpu_diff()[...] = dy
