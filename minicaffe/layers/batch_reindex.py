r"""BatchReindex: pick (and reorder, or repeat) items of a batch by index.

Caffe: `batch_reindex_layer.cpp` / `.cu`. Device twin: `opencl/batch_reindex.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer, register_layer


@register_layer
class BatchReindexLayer(Layer):
    r"""Gather items of the first bottom along axis 0, in the order the second bottom lists.

    With indices $r_0 \dots r_{M-1}$ (a 1-D blob, each in $[0, N)$ for a bottom of $N$
    items; a fractional value is truncated toward zero, as Caffe's cast does):
    $$ y[m] = x[r_m] $$
    An item may be listed several times or not at all, so backward *adds* the gradients of
    every copy and leaves 0 for the items not picked:
    $$ \frac{\partial E}{\partial x[n]} = \sum_{m:\ r_m = n} \frac{\partial E}{\partial y[m]} $$
    The indices carry no gradient: asking for one is an error, as in Caffe.

    The indices are checked on the host before forward (as Caffe does), so a bad one is a
    clear error and never an out-of-bounds read. On the device each bottom value is one
    work-item that walks the index list and adds up the top diffs of its copies: no two
    work-items write the same place, so no atomics are needed.

    Bottoms: x (N, ...); indices r (M,).   Top: y (M, ...).

        layer { name: "pick" type: "BatchReindex" bottom: "x" bottom: "order" top: "y" }
    """

    type = "BatchReindex"
    exact_num_bottom_blobs = 2
    exact_num_top_blobs = 1

    def _fail(self, message):
        raise MinicaffeError(f"{self.type} layer {self.name!r}: {message}")

    def reshape(self, bottom, top):
        x, r = bottom
        if r.num_axes != 1:
            self._fail(f"the indices (bottom 1, {r.name!r}) must be a 1-D blob, got shape {r.shape}")
        if x.num_axes < 1:
            self._fail(f"bottom 0 ({x.name!r}) needs a batch axis, got shape {x.shape}")
        top[0].reshape((r.shape[0],) + x.shape[1:])
        self.inner = x.count_range(1)

    def _indices(self, bottom) -> np.ndarray:
        """The indices as ints, after Caffe's checks: 0 <= r < N (NaN fails both)."""
        r, items = bottom[1].cpu_data(), bottom[0].shape[0]
        bad = ~((r >= 0) & (r < items))
        if bad.any():
            m = int(np.argmax(bad))
            self._fail(f"index {r[m]} at position {m} of {bottom[1].name!r} is outside the "
                       f"batch of {items} items of {bottom[0].name!r}")
        return r.astype(np.int64)  # truncation toward zero, as static_cast<int>

    def forward_cpu(self, bottom, top):
        top[0].mutable_cpu_data()[...] = bottom[0].cpu_data()[self._indices(bottom)]

    def backward_cpu(self, top, propagate_down, bottom):
        self._no_index_gradient(propagate_down, bottom)
        if propagate_down[0]:
            dx = bottom[0].mutable_cpu_diff()
            dx[...] = 0
            np.add.at(dx, self._indices(bottom), top[0].cpu_diff())  # repeats add up

    def _no_index_gradient(self, propagate_down, bottom):
        if propagate_down[1]:
            self._fail(f"cannot backpropagate to the indices (bottom 1, {bottom[1].name!r})")

    def forward_gpu(self, bottom, top):
        self._indices(bottom)  # checked on the host, as Caffe does
        opencl.kernel("batch_reindex.cl", "batch_reindex_forward")(
            top[0].count, np.int32(self.inner), bottom[0].gpu_data(), bottom[1].gpu_data(),
            top[0].mutable_gpu_data())

    def backward_gpu(self, top, propagate_down, bottom):
        self._no_index_gradient(propagate_down, bottom)
        if propagate_down[0]:
            opencl.kernel("batch_reindex.cl", "batch_reindex_backward")(
                bottom[0].count, np.int32(self.inner), np.int32(bottom[1].count),
                top[0].gpu_diff(), bottom[1].gpu_data(), bottom[0].mutable_gpu_diff())
