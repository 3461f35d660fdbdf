r"""Concat: join several blobs along one axis.

Caffe: `concat_layer.cpp` / `.cu`. Device twin: `opencl/concat.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer, register_layer


@register_layer
class ConcatLayer(Layer):
    r"""Concatenate K bottoms along `axis` (default 1, the channels of an N×C×H×W blob).

    All bottoms must have the same number of axes and the same dims except along `axis`:
    $$ x_k : (d_0, \dots, c_k, \dots, d_{n-1}) \;\longrightarrow\;
       y : (d_0, \dots, \textstyle\sum_k c_k, \dots, d_{n-1}) $$
    Along `axis`, $y$ holds $x_1$'s slices first, then $x_2$'s, and so on. Backward cuts
    the top diff back into the same pieces:
    $$ \frac{\partial E}{\partial x_k} = \frac{\partial E}{\partial y}
       \Big[\, \dots,\ o_k : o_k + c_k,\ \dots \Big], \qquad o_k = \textstyle\sum_{j<k} c_j $$

    On the device each bottom is one kernel launch that copies it into its slab of the top
    (and back, for the diffs), starting $o_k$ along the axis.

    `axis` may be negative (-1 is the last axis). The deprecated `concat_dim` means the
    same but may not be negative; give one or the other, not both. With a single bottom
    the top simply shares its data and diff, as in Caffe.

    Bottoms: x_1 .. x_K (K >= 1).   Top: y.

        layer { name: "concat" type: "Concat" bottom: "a" bottom: "b" top: "ab"
                concat_param { axis: 1 } }
    """

    type = "Concat"
    min_bottom_blobs = 1
    exact_num_top_blobs = 1

    def _fail(self, message):
        raise MinicaffeError(f"{self.type} layer {self.name!r}: {message}")

    def layer_setup(self, bottom, top):
        param = self.layer_param.concat_param
        if param.HasField("axis") and param.HasField("concat_dim"):
            self._fail("give either axis or concat_dim (deprecated), not both")

    def reshape(self, bottom, top):
        param, first = self.layer_param.concat_param, bottom[0]
        if param.HasField("concat_dim"):
            # concat_dim is unsigned, so it never counts from the end.
            name, axis, lowest = "concat_dim", param.concat_dim, 0
        else:
            name, axis, lowest = "axis", param.axis, -first.num_axes
        if not lowest <= axis < first.num_axes:
            self._fail(f"{name} {axis} is out of range for bottom 0 of shape {first.shape}")
        self.concat_axis = axis = axis % first.num_axes
        top_shape = list(first.shape)
        for i, blob in enumerate(bottom[1:], start=1):
            if blob.num_axes != first.num_axes:
                self._fail(f"all bottoms must have the same number of axes: bottom 0 has shape "
                           f"{first.shape}, bottom {i} has shape {blob.shape}")
            if any(a != b for j, (a, b) in enumerate(zip(first.shape, blob.shape)) if j != axis):
                self._fail(f"all bottoms must have the same shape except along axis {axis}: "
                           f"bottom 0 has shape {first.shape}, bottom {i} has shape {blob.shape}")
            top_shape[axis] += blob.shape[axis]
        top[0].reshape(top_shape)
        if len(bottom) == 1:
            top[0].share_data(first)
            top[0].share_diff(first)

    def forward_cpu(self, bottom, top):
        if len(bottom) > 1:
            np.concatenate([blob.cpu_data() for blob in bottom], axis=self.concat_axis,
                           out=top[0].mutable_cpu_data())

    def backward_cpu(self, top, propagate_down, bottom):
        if len(bottom) == 1:
            return  # the bottom shares the top's diff
        dy = top[0].cpu_diff()
        offsets = np.cumsum([blob.shape[self.concat_axis] for blob in bottom])[:-1]
        for blob, piece, down in zip(bottom, np.split(dy, offsets, axis=self.concat_axis),
                                     propagate_down):
            if down:
                blob.mutable_cpu_diff()[...] = piece

    def forward_gpu(self, bottom, top):
        if len(bottom) > 1:
            y, offset = top[0].mutable_gpu_data(), 0
            for blob in bottom:
                self._slab("concat_forward", blob, top[0], blob.gpu_data(), y, offset)
                offset += blob.shape[self.concat_axis]

    def backward_gpu(self, top, propagate_down, bottom):
        if len(bottom) == 1:
            return  # the bottom shares the top's diff
        dy, offset = top[0].gpu_diff(), 0
        for blob, down in zip(bottom, propagate_down):
            if down:
                self._slab("concat_backward", blob, top[0], dy, blob.mutable_gpu_diff(), offset)
            offset += blob.shape[self.concat_axis]

    def _slab(self, kernel, blob, top, src, dst, offset):
        """Copy between `blob` and its slab of `top` that starts `offset` along the axis."""
        axis = self.concat_axis
        opencl.kernel("concat.cl", kernel)(
            blob.count, src, dst, np.int32(blob.shape[axis]), np.int32(top.shape[axis]),
            np.int32(offset), np.int32(top.count_range(axis + 1)))
