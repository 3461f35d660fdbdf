r"""Crop: cut the first bottom down to the shape of the second (Caffe's `crop_layer.cpp`).

Device twin: `opencl/crop.cl`.
"""
from __future__ import annotations

import numpy as np

from minicaffe import opencl
from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer, register_layer


@register_layer
class CropLayer(Layer):
    r"""Copy a box out of bottom 0, the size of bottom 1 on the axes from `axis` on.

    With $a$ = `crop_param.axis` (default 2; negative counts from the end) and offsets
    $o_i$ for the axes $i \ge a$ (`offset` given once for all of them, once per axis, or
    not at all for 0), the top has bottom 0's size on the axes before $a$ and bottom 1's
    from $a$ on, and

    $$ y_{j_0, \dots, j_{n-1}} = x_{j_0 + o_0,\ \dots,\ j_{n-1} + o_{n-1}}, \qquad o_i = 0 \text{ for } i < a $$

    $$ \frac{\partial E}{\partial x_{\mathbf{j} + \mathbf{o}}} = \frac{\partial E}{\partial y_{\mathbf{j}}},
       \qquad \frac{\partial E}{\partial x} = 0 \text{ outside the box} $$

    Bottom 1 gives only its shape: it gets no gradient (its diff is left alone, as in
    Caffe) and its sizes before $a$ need not match. Each crop must fit: $o_i + $
    bottom 1's size $\le$ bottom 0's size on every axis $i \ge a$. Typical use is an
    FCN's upsampled score map cut back to the input image (offsets undoing the padding).
    Not in place (the shapes differ).

    Bottoms: x, any shape; the reference, at least as many axes. Top: the crop.

        layer { name: "score" type: "Crop" bottom: "upscore" bottom: "data" top: "score"
                crop_param { axis: 2 offset: 19 } }

    numpy: the box is one slice per axis, so forward is a copy of a view and backward
    zeroes the bottom diff and writes the top diff into that view. Device: one
    work-item per row of the top (its last axis, contiguous in both blobs) finds where
    the row starts in bottom 0 from its index along each axis; the per-axis sizes,
    strides and offsets live on the device as int arrays (Caffe's `Blob<int>`s).
    """

    type = "Crop"
    exact_num_bottom_blobs = 2
    exact_num_top_blobs = 1

    def _error(self, message: str) -> MinicaffeError:
        return MinicaffeError(f"{self.type} layer {self.name!r}: {message}")

    def layer_setup(self, bottom, top):
        param, x = self.layer_param.crop_param, bottom[0]
        try:
            start = x.canonical_axis_index(param.axis)
        except MinicaffeError as err:
            raise self._error(f"crop_param.axis: {err}") from None
        if len(param.offset) > 1 and start + len(param.offset) != x.num_axes:
            raise self._error(f"{len(param.offset)} offsets given for the {x.num_axes - start} "
                              f"axes from axis {start} of bottom {x.name!r} {x.shape}; give one "
                              f"offset for all of them or one per axis")
        self._geometry = None

    def reshape(self, bottom, top):
        param, x, ref = self.layer_param.crop_param, bottom[0], bottom[1]
        if top[0] is x:
            raise self._error("does not allow in-place computation: give the top a new name")
        start = x.canonical_axis_index(param.axis)
        if ref.num_axes < x.num_axes:
            raise self._error(f"the reference bottom {ref.name!r} {ref.shape} has fewer axes "
                              f"than bottom {x.name!r} {x.shape}")
        shape, offsets = list(x.shape), [0] * x.num_axes
        for i in range(start, x.num_axes):
            offsets[i] = param.offset[0] if len(param.offset) == 1 else \
                param.offset[i - start] if param.offset else 0
            shape[i] = ref.shape[i]
            if offsets[i] + ref.shape[i] > x.shape[i]:
                raise self._error(f"the crop of axis {i} is out of bounds: offset {offsets[i]} + "
                                  f"size {ref.shape[i]} (of {ref.name!r} {ref.shape}) > "
                                  f"{x.shape[i]} (of {x.name!r} {x.shape})")
        top[0].reshape(tuple(shape))
        self.box = tuple(slice(o, o + s) for o, s in zip(offsets, shape))
        self._key = (x.shape, tuple(offsets), tuple(shape))

    def forward_cpu(self, bottom, top):
        top[0].mutable_cpu_data()[...] = bottom[0].cpu_data()[self.box]

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            dx = bottom[0].mutable_cpu_diff()
            dx[...] = 0
            dx[self.box] = top[0].cpu_diff()

    # ---- device
    def _device_geometry(self):
        """Top sizes, bottom-0 strides and offsets per axis, on the device (made once per shape)."""
        if self._geometry is None or self._geometry[0] != self._key:
            import pyopencl  # only the OpenCL engine comes here

            x_shape, offsets, shape = self._key
            strides = [int(np.prod(x_shape[i + 1:])) for i in range(len(x_shape))]
            values = np.array(list(shape) + strides + list(offsets), dtype=np.int32)
            buffer = pyopencl.Buffer(opencl.device().context,
                                     pyopencl.mem_flags.READ_ONLY | pyopencl.mem_flags.COPY_HOST_PTR,
                                     hostbuf=values)
            self._geometry = (self._key, buffer)
        return self._geometry[1]

    def _launch(self, name, top, x, y):
        shape = self._key[2]
        rows = top[0].count // shape[-1]
        opencl.kernel("crop.cl", name)(rows, x, y, np.int32(len(shape)), self._device_geometry())

    def forward_gpu(self, bottom, top):
        self._launch("crop_forward", top, bottom[0].gpu_data(), top[0].mutable_gpu_data())

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            dx = bottom[0].mutable_gpu_diff()
            opencl.fill(dx, bottom[0].count, 0.0)
            self._launch("crop_backward", top, top[0].gpu_diff(), dx)
