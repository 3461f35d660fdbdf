r"""Slice: cut one blob into several along an axis (the inverse of Concat).

Caffe: `slice_layer.cpp` / `.cu`. Device twin: `opencl/slice.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer, register_layer


@register_layer
class SliceLayer(Layer):
    r"""Split the bottom along `axis` (default 1) into K tops.

    With cut points $0 < p_1 < \dots < p_{K-1}$ along the axis (`slice_point`, one fewer
    than the tops), top $k$ is the piece $[p_{k-1}, p_k)$, with $p_0 = 0$ and $p_K$ the
    bottom's size $S$ on that axis:
    $$ y_k = x\big[\, \dots,\ p_{k-1} : p_k,\ \dots \big] $$
    Without `slice_point` the axis is cut into K equal pieces (S must be a multiple of
    K). Backward puts each top diff back in its place:
    $$ \frac{\partial E}{\partial x}\big[\, \dots,\ p_{k-1} : p_k,\ \dots \big]
       = \frac{\partial E}{\partial y_k} $$

    `axis` may be negative (-1 is the last axis); the deprecated `slice_dim` means the
    same but may not be negative; give one or the other. As in Caffe, a last cut point
    equal to S leaves the last top empty. With a single top, the top simply shares the
    bottom's data and diff.

    On the device each top is one kernel launch copying its slab (and back, for diffs).

    Bottom: x.   Tops: y_1 .. y_K (K >= 1).

        layer { name: "slice" type: "Slice" bottom: "data" top: "a" top: "b" top: "c"
                slice_param { axis: 1 slice_point: 1 slice_point: 3 } }
    """

    type = "Slice"
    exact_num_bottom_blobs = 1
    min_top_blobs = 1

    def _fail(self, message):
        raise MinicaffeError(f"{self.type} layer {self.name!r}: {message}")

    def layer_setup(self, bottom, top):
        param = self.layer_param.slice_param
        if param.HasField("axis") and param.HasField("slice_dim"):
            self._fail("give either axis or slice_dim (deprecated), not both")
        self.slice_points = list(param.slice_point)

    def reshape(self, bottom, top):
        param, x = self.layer_param.slice_param, bottom[0]
        if param.HasField("slice_dim"):
            # slice_dim is unsigned, so it never counts from the end.
            name, axis, lowest = "slice_dim", param.slice_dim, 0
        else:
            name, axis, lowest = "axis", param.axis, -x.num_axes
        if not lowest <= axis < x.num_axes:
            self._fail(f"{name} {axis} is out of range for bottom {x.name!r} of shape {x.shape}")
        self.slice_axis = axis = axis % x.num_axes
        size = x.shape[axis]
        if self.slice_points:
            points = self.slice_points
            if len(points) != len(top) - 1:
                self._fail(f"{len(points)} slice_point value(s) for {len(top)} tops; give one "
                           f"fewer slice_point than tops")
            if len(top) > size:
                self._fail(f"{len(top)} tops but axis {axis} of bottom shape {x.shape} has only "
                           f"{size} entries")
            bounds = [0] + points + [size]
            if any(b <= a for a, b in zip(bounds[:-2], bounds[1:-1])) or points[-1] > size:
                self._fail(f"slice_point {points} must increase strictly from above 0 up to at "
                           f"most {size}, the size of axis {axis} of bottom shape {x.shape}")
            sizes = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
        else:
            if size % len(top):
                self._fail(f"{len(top)} tops do not evenly divide axis {axis} of size {size} "
                           f"(bottom shape {x.shape}); give slice_point")
            sizes = [size // len(top)] * len(top)
        self.sizes = sizes
        for blob, piece in zip(top, sizes):
            blob.reshape(x.shape[:axis] + (piece,) + x.shape[axis + 1:])
        if len(top) == 1:
            top[0].share_data(x)
            top[0].share_diff(x)

    def forward_cpu(self, bottom, top):
        if len(top) > 1:
            pieces = np.split(bottom[0].cpu_data(), np.cumsum(self.sizes)[:-1], axis=self.slice_axis)
            for blob, piece in zip(top, pieces):
                blob.mutable_cpu_data()[...] = piece

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0] and len(top) > 1:
            np.concatenate([blob.cpu_diff() for blob in top], axis=self.slice_axis,
                           out=bottom[0].mutable_cpu_diff())

    def forward_gpu(self, bottom, top):
        if len(top) > 1:
            x, offset = bottom[0].gpu_data(), 0
            for blob in top:
                self._slab("slice_forward", blob, bottom[0], x, blob.mutable_gpu_data(), offset)
                offset += blob.shape[self.slice_axis]

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0] and len(top) > 1:
            dx, offset = bottom[0].mutable_gpu_diff(), 0
            for blob in top:
                self._slab("slice_backward", blob, bottom[0], blob.gpu_diff(), dx, offset)
                offset += blob.shape[self.slice_axis]

    def _slab(self, kernel, blob, bottom, src, dst, offset):
        """Copy between top `blob` and its slab of `bottom` starting `offset` along the axis."""
        axis = self.slice_axis
        opencl.kernel("slice.cl", kernel)(
            blob.count, src, dst, np.int32(blob.shape[axis]), np.int32(bottom.shape[axis]),
            np.int32(offset), np.int32(bottom.count_range(axis + 1)))
