r"""Filter: keep only the batch items that a selector marks, in every bottom but the selector.

Caffe: `filter_layer.cpp` / `.cu`. Device twin: `opencl/filter.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer, register_layer


@register_layer
class FilterLayer(Layer):
    r"""Pass on the items $n$ whose selector $s_n$ is nonzero; the selector is the last bottom.

    With $K$ bottoms to filter plus the selector (one value per item: shape $(N)$ or
    $(N, 1, \dots, 1)$), top $k$ holds, in their order, the items of bottom $k$ with
    $s_n \ne 0$ (NaN counts as nonzero, as in C):
    $$ y_k[j] = x_k[n_j], \qquad n_0 < n_1 < \dots \text{ the items with } s_n \ne 0 $$
    Backward routes each top diff back to its item and gives 0 to the items left out:
    $$ \frac{\partial E}{\partial x_k[n]} = \begin{cases}
       \partial E / \partial y_k[j] & n = n_j \\ 0 & s_n = 0 \end{cases} $$
    The selector carries no gradient: asking for one is an error, as in Caffe.

    The tops' batch size changes from forward to forward, so the selector is read on the
    host when the tops are sized (as in Caffe; it is usually a label from a Data layer).
    As in Caffe, `setup` sizes the tops for the whole batch (the selector may not be filled
    yet); every forward then sizes them for the items selected, which may be none: a top
    with 0 items (Caffe's backward would divide by zero there; here every bottom diff is 0).

    On the device one small kernel lists the selected items (and, per item, its place in
    the top), on the device itself; the copies forward and back then read that list.

    Bottoms: x_1 .. x_K (N, ...), selector s (N) or (N, 1, ...).   Tops: y_1 .. y_K.

        layer { name: "keep" type: "Filter" bottom: "data" bottom: "label"
                bottom: "keep_flag" top: "data_kept" top: "label_kept" }
    """

    type = "Filter"
    min_bottom_blobs = 2
    min_top_blobs = 1

    def _fail(self, message):
        raise MinicaffeError(f"{self.type} layer {self.name!r}: {message}")

    def layer_setup(self, bottom, top):
        if len(top) != len(bottom) - 1:
            self._fail(f"needs one top per bottom to filter: {len(bottom) - 1} bottom(s) before "
                       f"the selector, {len(top)} top(s)")
        self.first_reshape = True
        # Device scratch: the selected items, and each item's place in the top (-1 if dropped).
        self.selected = Blob(name=f"{self.name}.selected")
        self.place = Blob(name=f"{self.name}.place")

    def reshape(self, bottom, top):
        selector, items = bottom[-1], bottom[-1].shape[0] if bottom[-1].num_axes else 0
        if selector.num_axes < 1 or any(d != 1 for d in selector.shape[1:]):
            self._fail(f"the selector (last bottom, {selector.name!r}) must have one value per "
                       f"item, shape (N) or (N, 1, ...), got {selector.shape}")
        for i, blob in enumerate(bottom[:-1]):
            if blob.num_axes < 1 or blob.shape[0] != items:
                self._fail(f"bottom {i} ({blob.name!r}) of shape {blob.shape} must have the "
                           f"selector's {items} items on axis 0")
        self.indices = np.flatnonzero(selector.cpu_data().reshape(-1) != 0)
        kept = len(self.indices)
        if self.first_reshape:  # at setup, size for the whole batch, as Caffe does
            kept, self.first_reshape = items, False
        for blob, x in zip(top, bottom):
            blob.reshape((kept,) + x.shape[1:])
        self.selected.reshape(max(items, 1))
        self.place.reshape(max(items, 1))

    def forward_cpu(self, bottom, top):
        for x, y in zip(bottom, top):
            y.mutable_cpu_data()[...] = x.cpu_data()[self.indices]

    def backward_cpu(self, top, propagate_down, bottom):
        self._no_selector_gradient(propagate_down, bottom)
        for x, y, down in zip(bottom, top, propagate_down):
            if down:
                dx = x.mutable_cpu_diff()
                dx[...] = 0
                dx[self.indices] = y.cpu_diff()

    def _no_selector_gradient(self, propagate_down, bottom):
        if propagate_down[-1]:
            self._fail(f"cannot backpropagate to the selector (last bottom, {bottom[-1].name!r})")

    def forward_gpu(self, bottom, top):
        items = bottom[-1].shape[0]
        # One work-item walks the selector: the list is short (one entry per item).
        opencl.kernel("filter.cl", "filter_indices")(
            1, np.int32(items), bottom[-1].gpu_data(), self.selected.mutable_gpu_data(),
            self.place.mutable_gpu_data())
        for x, y in zip(bottom, top):
            opencl.kernel("filter.cl", "filter_forward")(
                y.count, np.int32(x.count_range(1)), x.gpu_data(), self.selected.gpu_data(),
                y.mutable_gpu_data())

    def backward_gpu(self, top, propagate_down, bottom):
        self._no_selector_gradient(propagate_down, bottom)
        for x, y, down in zip(bottom, top, propagate_down):
            if down:
                opencl.kernel("filter.cl", "filter_backward")(
                    x.count, np.int32(x.count_range(1)), y.gpu_diff(), self.place.gpu_data(),
                    x.mutable_gpu_diff())
