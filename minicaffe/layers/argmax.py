r"""ArgMax: the indices (and optionally the values) of the top k entries.

Caffe: `argmax_layer.cpp` (Caffe has no GPU version; its GPU mode runs the CPU code).
Device twin: `opencl/argmax.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer, register_layer


@register_layer
class ArgMaxLayer(Layer):
    r"""For each item (or along `axis`), the positions of the `top_k` largest values.

    Entries are ranked by value, largest first; equal values are ranked by position,
    *larger position first* (Caffe sorts (value, index) pairs in descending order). Over
    the $D$ values $x_0 \dots x_{D-1}$ being ranked, the $j$-th pick is
    $$ i_j = \text{the } j\text{-th largest pair } (x_i,\ i), \qquad j = 0 \dots k-1 $$

    Two layouts, as in Caffe:

    * **No `axis`**: each item $n$ (index of axis 0) ranks all its $D = $ count(1) values,
      flattened. The top has shape $(N, 1, k)$, padded with 1s to the bottom's number of
      axes (at least 3), holding $i_j$. With `out_max_val`, it is $(N, 2, k, \dots)$:
      row 0 holds the indices, row 1 the values $x_{i_j}$.
    * **`axis` given** (may be negative): the ranking runs along that axis, separately for
      every position of the other axes; the top is the bottom's shape with that axis
      replaced by $k$, and holds the indices, or with `out_max_val` the values only.

    Indices are stored as floats, like every value in a Blob.

    There is no gradient: the output is piecewise constant in the input, and Caffe's
    backward is "not implemented"; calling it is an error here too. A Net only calls it
    when a loss depends on the ArgMax top (or with `force_backward`).

    On the device one work-item ranks one set of $D$ values: it picks the largest pair,
    then the largest pair below that, $k$ times, which needs no scratch memory.

    Bottom: x.   Top: indices and/or values, shaped as above.

        layer { name: "pred" type: "ArgMax" bottom: "prob" top: "pred"
                argmax_param { top_k: 5 out_max_val: true } }
    """

    type = "ArgMax"
    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def _fail(self, message):
        raise MinicaffeError(f"{self.type} layer {self.name!r}: {message}")

    def layer_setup(self, bottom, top):
        param = self.layer_param.argmax_param
        self.out_max_val, self.top_k = param.out_max_val, param.top_k
        self.has_axis = param.HasField("axis")
        if self.top_k < 1:
            self._fail("top_k must be at least 1")

    def reshape(self, bottom, top):
        x = bottom[0]
        if self.has_axis:
            axis = self.layer_param.argmax_param.axis
            try:
                self.axis = x.canonical_axis_index(axis)
            except MinicaffeError:
                self._fail(f"axis {axis} is out of range for bottom {x.name!r} of shape {x.shape}")
            self.dim, what = x.shape[self.axis], f"the size of axis {self.axis}"
            shape = list(x.shape)
            shape[self.axis] = self.top_k
        else:
            if x.num_axes < 1:
                self._fail(f"bottom {x.name!r} needs a batch axis, got shape {x.shape}")
            self.dim, what = x.count_range(1), "the number of values per item"
            shape = [1] * max(x.num_axes, 3)
            shape[0], shape[1], shape[2] = x.shape[0], 2 if self.out_max_val else 1, self.top_k
        if self.top_k > self.dim:
            self._fail(f"top_k {self.top_k} is more than {what} ({self.dim}) of bottom "
                       f"{x.name!r} of shape {x.shape}")
        top[0].reshape(shape)
        self.outer = x.shape[0] if not self.has_axis else x.count_range(0, self.axis)
        self.inner = 1 if not self.has_axis else x.count_range(self.axis + 1)

    def forward_cpu(self, bottom, top):
        x = bottom[0].cpu_data().reshape(self.outer, self.dim, self.inner)
        # Descending by (value, index): a stable sort of -x over the reversed axis puts
        # equal values in reversed order, i.e. larger index first.
        order = np.argsort(-x[:, ::-1], axis=1, kind="stable")[:, :self.top_k]
        index = self.dim - 1 - order
        y = top[0].mutable_cpu_data()
        if not self.has_axis and self.out_max_val:
            y = y.reshape(self.outer, 2, self.top_k)
            y[:, 0] = index[:, :, 0]
            y[:, 1] = np.take_along_axis(x, index, axis=1)[:, :, 0]
        else:
            y = y.reshape(self.outer, self.top_k, self.inner)
            y[...] = np.take_along_axis(x, index, axis=1) if self.out_max_val else index

    def backward_cpu(self, top, propagate_down, bottom):
        self._fail("has no backward (Caffe: not implemented): the top is piecewise constant; "
                   "no loss should depend on it")

    def forward_gpu(self, bottom, top):
        opencl.kernel("argmax.cl", "argmax_forward")(
            self.outer * self.inner, bottom[0].gpu_data(), np.int32(self.dim),
            np.int32(self.inner), np.int32(self.top_k), np.int32(self.out_max_val),
            np.int32(not self.has_axis and self.out_max_val), top[0].mutable_gpu_data())

    backward_gpu = backward_cpu  # nothing to compute: only the error
