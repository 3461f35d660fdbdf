r"""SPP: spatial pyramid pooling, a fixed-length vector from an image of any size
(Caffe's `spp_layer.cpp`; He et al., "Spatial Pyramid Pooling in Deep Convolutional
Networks", 2014).

No device twin of its own: SPP is built, as in Caffe, of inner Split, Pooling, Flatten
and Concat layers, and each of them runs its own kernels (`opencl/pooling.cl`, ...) when
the engine is OpenCL. SPP itself computes nothing.
"""
from __future__ import annotations

import math

from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer, create_layer, register_layer
from minicaffe.proto import caffe_pb2


def pooling_geometry(level: int, height: int, width: int) -> tuple[int, int, int, int]:
    """(kernel_h, kernel_w, pad_h, pad_w) of pyramid level `level` (Caffe's GetPoolingParam).

    The level has $2^{level}$ bins per side; the stride is the kernel."""
    bins = 2 ** level
    kernel_h, kernel_w = math.ceil(height / bins), math.ceil(width / bins)
    # The bins overhang the image by `remainder` pixels; half of it (rounded up) is padding.
    pad_h = (kernel_h * bins - height + 1) // 2
    pad_w = (kernel_w * bins - width + 1) // 2
    return kernel_h, kernel_w, pad_h, pad_w


@register_layer
class SPPLayer(Layer):
    r"""Pool each channel over a pyramid of grids, flatten each level, concatenate.

    Level $l = 0, \dots, L-1$ ($L$ = `pyramid_height`) splits an $H \times W$ channel
    into $2^l \times 2^l$ bins with a Pooling layer (`pool`: MAX, AVE or STOCHASTIC)
    whose kernel is the bin and whose stride is the kernel, padded to cover the image:

    $$ k_h = \lceil H / 2^l \rceil, \qquad s_h = k_h, \qquad
       p_h = \left\lfloor \frac{k_h 2^l - H + 1}{2} \right\rfloor $$

    and likewise along the width. Level $l$'s output, $(N, C, 2^l, 2^l)$ for most sizes
    (Pooling's rounding decides), is flattened to $(N, C \cdot 4^l)$, and the levels are
    concatenated along axis 1: the top is $(N, C \sum_l 4^l)$, whatever $H$ and $W$
    are, which is what lets a fully connected layer follow convolutions of any input
    size. With $L = 1$ the top is the single pooling's output, $(N, C, 1, 1)$, not
    flattened. Backward is the inner layers' backward in reverse; the Split adds the
    levels' gradients into the bottom diff:

    $$ \frac{\partial E}{\partial x} = \sum_{l} \frac{\partial E}{\partial x}\Big|_{\text{level } l} $$

    A level needs its padding smaller than its kernel (Pooling's rule), so a small
    image limits the height of the pyramid ($H \ge 2^{L-1}$ is not always enough; the
    error says which level fails). As in Caffe, the inner layers get a fresh
    LayerParameter, hence the TRAIN phase (STOCHASTIC pooling samples even in a TEST
    net). Not in place.

    Bottom: x, (N, C, H, W).   Top: (N, C (4^L - 1) / 3).

        layer { name: "spp" type: "SPP" bottom: "conv5" top: "spp"
                spp_param { pyramid_height: 3 pool: MAX } }
    """

    type = "SPP"
    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def _error(self, message: str) -> MinicaffeError:
        return MinicaffeError(f"{self.type} layer {self.name!r}: {message}")

    def _inner(self, type_name: str, suffix: str, **fields):
        param = caffe_pb2.LayerParameter(name=f"{self.name}/{suffix}", type=type_name, **fields)
        return create_layer(param)  # through the registry, as Caffe does

    def layer_setup(self, bottom, top):
        self.height = self.layer_param.spp_param.pyramid_height
        if self.height < 1:
            raise self._error("spp_param.pyramid_height must be given and at least 1")
        if top[0] is bottom[0]:
            raise self._error("does not allow in-place computation: give the top a new name")
        levels = range(self.height)
        if self.height > 1:
            self.split_tops = [Blob(name=f"{self.name}/split{l}") for l in levels]
            self.pooled = [Blob(name=f"{self.name}/pool{l}") for l in levels]
            self.flat = [Blob(name=f"{self.name}/flatten{l}") for l in levels]
            self.split = self._inner("Split", "split")
            self.flatten = [self._inner("Flatten", f"flatten{l}") for l in levels]
            self.concat = self._inner("Concat", "concat")
        self._shape = None

    def _pooling(self, level: int, height: int, width: int):
        """The Pooling layer of `level` for an H x W bottom."""
        kernel_h, kernel_w, pad_h, pad_w = pooling_geometry(level, height, width)
        method = caffe_pb2.SPPParameter.PoolMethod.Name(self.layer_param.spp_param.pool)
        return self._inner("Pooling", f"pool{level}", pooling_param=caffe_pb2.PoolingParameter(
            pool=caffe_pb2.PoolingParameter.PoolMethod.Value(method),
            kernel_h=kernel_h, kernel_w=kernel_w, stride_h=kernel_h, stride_w=kernel_w,
            pad_h=pad_h, pad_w=pad_w))

    def _set_up(self, level, layer, bottom, top):
        try:
            layer.setup(bottom, top)
        except MinicaffeError as err:
            height, width = bottom[0].shape[2:]
            raise self._error(f"pyramid level {level} ({2 ** level} x {2 ** level} bins) of a "
                              f"{height} x {width} image: {err}") from None

    def reshape(self, bottom, top):
        x = bottom[0]
        if x.num_axes != 4:
            raise self._error(f"bottom {x.name!r} must have 4 axes (N, C, H, W), got {x.shape}")
        if x.shape == self._shape:
            return  # the inner layers are sized for this shape already
        _, _, height, width = x.shape
        # The pooling geometry depends on H and W: new Pooling layers for a new size.
        self.pooling = [self._pooling(l, height, width) for l in range(self.height)]
        if self.height == 1:
            self._set_up(0, self.pooling[0], bottom, top)
        else:
            self.split.setup(bottom, self.split_tops)
            for l in range(self.height):
                self._set_up(l, self.pooling[l], [self.split_tops[l]], [self.pooled[l]])
                self.flatten[l].setup([self.pooled[l]], [self.flat[l]])
            self.concat.setup(self.flat, top)
        self._shape = x.shape

    def forward_cpu(self, bottom, top):
        if self.height == 1:
            self.pooling[0].forward(bottom, top)
            return
        self.split.forward(bottom, self.split_tops)
        for l in range(self.height):
            self.pooling[l].forward([self.split_tops[l]], [self.pooled[l]])
            self.flatten[l].forward([self.pooled[l]], [self.flat[l]])
        self.concat.forward(self.flat, top)

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        if self.height == 1:
            self.pooling[0].backward(top, propagate_down, bottom)
            return
        self.concat.backward(top, [True] * self.height, self.flat)
        for l in range(self.height):
            self.flatten[l].backward([self.flat[l]], [True], [self.pooled[l]])
            self.pooling[l].backward([self.pooled[l]], [True], [self.split_tops[l]])
        self.split.backward(self.split_tops, [True], bottom)

    # The inner layers run on the current engine themselves (Layer.forward/backward
    # pick forward_cpu or forward_gpu by the mode): SPP has nothing of its own to compute.
    forward_gpu, backward_gpu = forward_cpu, backward_cpu
