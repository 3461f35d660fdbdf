r"""PReLU: the parametric ReLU, whose negative slopes are learned, one per channel.

Caffe: `prelu_layer.cpp` / `.cu`. Device twin: `opencl/prelu.cl` (the slope gradient is
summed there too, one work-group per slope).
"""
import numpy as np

from minicaffe import opencl
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.filler import fill
from minicaffe.layer import register_layer
from minicaffe.layers.neuron import NeuronLayer
from minicaffe.proto import caffe_pb2


@register_layer
class PReLULayer(NeuronLayer):
    r"""A leaky ReLU whose slope $a_c$ for $x \le 0$ is a learnable parameter of channel $c$
    (axis 1), or one slope for all channels with `channel_shared: true`.

    $$ y = \max(0, x) + a_c \min(0, x) \qquad
       \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}
       \begin{cases} 1 & x > 0 \\ a_c & x \le 0 \end{cases} \qquad
       \frac{\partial E}{\partial a_c} \mathrel{+}= \sum_{n,\,s}
       \frac{\partial E}{\partial y_{n,c,s}}\, x_{n,c,s}\, [x_{n,c,s} \le 0] $$

    The slope gradient is summed over the batch $n$ and the positions $s$ of axes 2 and
    beyond (and over the channels too when shared), and added to the slope's diff like
    every parameter gradient.

    Parameter blob: the slopes, shape $(C)$, or a scalar (shape `()`) when shared; filled
    by `prelu_param.filler`, by default the constant 0.25 (He et al., 2015). The bottom
    needs at least two axes (num, channels, ...).

    May run in place (`top` is `bottom`): forward then keeps a copy of x, because the
    slope gradient needs x itself, not only its sign.

    Bottom: x, shape $(N, C, \dots)$.   Top: y, the shape of x.

        layer { name: "prelu1" type: "PReLU" bottom: "conv1" top: "conv1"
                prelu_param { filler { type: "constant" value: 0.25 } } }
    """

    type = "PReLU"

    def _error(self, message: str) -> MinicaffeError:
        return MinicaffeError(f"{self.type} layer {self.name!r}: {message}")

    def layer_setup(self, bottom, top):
        p = self.layer_param.prelu_param
        self.channel_shared = p.channel_shared
        self._check_axes(bottom[0])
        channels = bottom[0].shape[1]
        wanted = 1 if self.channel_shared else channels
        if self.blobs:  # given in the prototxt or a caffemodel: keep them, check the size
            if len(self.blobs) != 1 or self.blobs[0].count != wanted:
                raise self._error(
                    f"expected one slope blob of {wanted} value(s) ("
                    f"{'channel_shared' if self.channel_shared else f'one per channel of {channels}'}"
                    f"), got {len(self.blobs)} blob(s) of shape(s) {[b.shape for b in self.blobs]}")
        else:
            self.blobs.append(Blob(() if self.channel_shared else (channels,), name=f"{self.name}.slope"))
            filler = (p.filler if p.HasField("filler")
                      else caffe_pb2.FillerParameter(type="constant", value=0.25))  # Caffe's default
            fill(self.blobs[0], filler)
        self.param_propagate_down = [True]
        self.bottom_memory = Blob(name=f"{self.name}.bottom_copy")  # x, kept when in place

    def _check_axes(self, x: Blob) -> None:
        if x.num_axes < 2:
            raise self._error(f"the bottom needs at least 2 axes (num, channels, ...), "
                              f"got shape {x.shape}")

    def reshape(self, bottom, top):
        x = bottom[0]
        self._check_axes(x)
        if not self.channel_shared and x.shape[1] != self.blobs[0].count:
            raise self._error(f"bottom of shape {x.shape} has {x.shape[1]} channels, but the layer "
                              f"has {self.blobs[0].count} slopes")
        top[0].reshape_like(x)
        if top[0] is x:
            self.bottom_memory.reshape_like(x)
        # (num, slopes, inner): each slope covers `inner` consecutive values of every example.
        self.slopes = self.blobs[0].count
        self.view = (x.shape[0], self.slopes, x.count_range(1) // self.slopes)

    def forward_cpu(self, bottom, top):
        x = bottom[0].cpu_data().reshape(self.view)
        if top[0] is bottom[0]:
            self.bottom_memory.mutable_cpu_data()[...] = bottom[0].cpu_data()
        a = self.blobs[0].cpu_data().reshape(1, -1, 1)
        top[0].mutable_cpu_data().reshape(self.view)[...] = np.maximum(x, 0) + a * np.minimum(x, 0)

    def backward_cpu(self, top, propagate_down, bottom):
        # In place, bottom data now holds y: the x saved by forward is used instead.
        x_blob = self.bottom_memory if top[0] is bottom[0] else bottom[0]
        x = x_blob.cpu_data().reshape(self.view)
        dy = top[0].cpu_diff().reshape(self.view)
        # The slope gradient first: in place, writing dE/dx overwrites dE/dy.
        if self.param_propagate(0):
            self.blobs[0].mutable_cpu_diff().reshape(-1)[...] += (dy * x * (x <= 0)).sum(axis=(0, 2))
        if propagate_down[0]:
            a = self.blobs[0].cpu_data().reshape(1, -1, 1)
            dx = dy * ((x > 0) + a * (x <= 0))
            bottom[0].mutable_cpu_diff().reshape(self.view)[...] = dx

    def forward_gpu(self, bottom, top):
        n = bottom[0].count
        if top[0] is bottom[0]:
            opencl.copy(n, bottom[0].gpu_data(), self.bottom_memory.mutable_gpu_data())
        opencl.kernel("prelu.cl", "prelu_forward")(
            n, bottom[0].gpu_data(), top[0].mutable_gpu_data(), self.blobs[0].gpu_data(),
            np.int32(self.slopes), np.int32(self.view[2]))

    def backward_gpu(self, top, propagate_down, bottom):
        x_blob = self.bottom_memory if top[0] is bottom[0] else bottom[0]
        num, slopes, inner = self.view
        if self.param_propagate(0):
            import pyopencl  # only the OpenCL engine comes here (for the local scratch)

            # One work-group per slope sums its num * inner terms (common.cl's group_sum).
            launcher = opencl.kernel("prelu.cl", "prelu_slope_backward")
            group = launcher.work_group
            scratch = pyopencl.LocalMemory(group * np.dtype(opencl.DTYPE).itemsize)
            launcher.launch((slopes * group,), (group,), np.int32(num), np.int32(slopes),
                            np.int32(inner), top[0].gpu_diff(), x_blob.gpu_data(),
                            self.blobs[0].mutable_gpu_diff(), scratch)
        if propagate_down[0]:
            opencl.kernel("prelu.cl", "prelu_backward")(
                bottom[0].count, top[0].gpu_diff(), x_blob.gpu_data(), bottom[0].mutable_gpu_diff(),
                self.blobs[0].gpu_data(), np.int32(slopes), np.int32(inner))
