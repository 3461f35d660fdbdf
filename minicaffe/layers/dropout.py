r"""Dropout: zero a random fraction of the inputs while training, scale up the rest.

Caffe: `dropout_layer.cpp` / `.cu`. Device twin: `opencl/dropout.cl`.
"""
import numpy as np

from minicaffe import common, opencl
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import register_layer
from minicaffe.layers.helpers import hash_uniform  # shared with STOCHASTIC Pooling
from minicaffe.layers.neuron import NeuronLayer
from minicaffe.proto import caffe_pb2


@register_layer
class DropoutLayer(NeuronLayer):
    r"""Inverted dropout with ratio $p$ (`dropout_ratio`, default 0.5).

    In the TRAIN phase each element gets its own keep mask $m = [u < 1 - p]$, so
    $m \sim \text{Bernoulli}(1 - p)$, and the kept values are scaled by $1/(1-p)$ so that
    $\mathbb{E}[y] = x$; the TEST phase is then the identity, with nothing to rescale:

    $$ \text{TRAIN:}\quad y = \frac{m\,x}{1-p}, \qquad
       \frac{\partial E}{\partial x} = \frac{m}{1-p}\,\frac{\partial E}{\partial y}
       \qquad\qquad \text{TEST:}\quad y = x, \qquad
       \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y} $$

    The uniforms $u$ come from a counter-based generator, `hash_uniform(seed, count)`:
    element i's $u$ is a hash of (seed, i), computed the same way by numpy
    (`layers/helpers.py`) and by the OpenCL kernel (`opencl/common.cl`), so both
    engines draw the same mask. Each forward draws a fresh 64-bit `seed` from
    `minicaffe.common.rng()`, so `set_random_seed` still makes a run repeatable.
    (Caffe instead fills a buffer from cuRAND on the GPU and from its host generator
    on the CPU, so its two engines draw different masks.)

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
        self.keep = np.float32(1.0 - ratio)  # u < keep, compared in float32 on both engines
        self.scale = np.float32(1.0 / (1.0 - ratio))
        self.rand_vec = Blob(name=f"{self.name}.rand_vec")

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.rand_vec.reshape_like(bottom[0])

    @staticmethod
    def draw_seed() -> np.uint64:
        """A fresh 64-bit seed for this forward's mask, from the process-wide RNG."""
        return common.rng().integers(2**64, dtype=np.uint64)

    def forward_cpu(self, bottom, top):
        x = bottom[0].cpu_data()
        if self.layer_param.phase == caffe_pb2.TRAIN:
            mask = self.rand_vec.mutable_cpu_data()
            mask[...] = (hash_uniform(self.draw_seed(), mask.size) < self.keep).reshape(mask.shape)
            top[0].mutable_cpu_data()[...] = x * mask * self.scale
        elif top[0] is not bottom[0]:
            top[0].mutable_cpu_data()[...] = x

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy = top[0].cpu_diff()
        if self.layer_param.phase == caffe_pb2.TRAIN:
            mask = self.rand_vec.cpu_data()
            bottom[0].mutable_cpu_diff()[...] = dy * mask * self.scale
        elif top[0] is not bottom[0]:
            bottom[0].mutable_cpu_diff()[...] = dy

    def forward_gpu(self, bottom, top):
        count = bottom[0].count
        if self.layer_param.phase == caffe_pb2.TRAIN:
            opencl.kernel("dropout.cl", "dropout_forward")(
                count, bottom[0].gpu_data(), self.draw_seed(), self.keep, self.scale,
                self.rand_vec.mutable_gpu_data(), top[0].mutable_gpu_data())
        elif top[0] is not bottom[0]:
            opencl.copy(count, bottom[0].gpu_data(), top[0].mutable_gpu_data())

    def backward_gpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        count = bottom[0].count
        if self.layer_param.phase == caffe_pb2.TRAIN:
            opencl.kernel("dropout.cl", "dropout_backward")(
                count, top[0].gpu_diff(), self.rand_vec.gpu_data(), self.scale,
                bottom[0].mutable_gpu_diff())
        elif top[0] is not bottom[0]:
            opencl.copy(count, top[0].gpu_diff(), bottom[0].mutable_gpu_diff())
