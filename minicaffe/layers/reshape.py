r"""Reshape: give the bottom's values a new shape, without copying.

Caffe: `reshape_layer.cpp`. No device twin is needed: no values are computed.
"""
from math import prod

from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer, register_layer


@register_layer
class ReshapeLayer(Layer):
    r"""Replace axes [`axis`, `axis` + `num_axes`) of the bottom's shape by `shape`.

    `reshape_param { shape { dim: ... } axis: a num_axes: k }`, Caffe's rules:

    * `axis` (default 0) is where the replaced range starts; negative values count from the
      end *of the gaps between axes*: -1 is after the last axis, so `axis: -1 num_axes: 0`
      appends axes.
    * `num_axes` (default -1: all the rest) is how many bottom axes are replaced; 0 inserts.
    * In `shape`, a dim of 0 copies the bottom's dim at the same position
      (`axis` + i), and one dim of -1 is inferred so that the counts match.

    Examples, for a bottom of shape (2, 3, 4, 5):

    | shape | axis | num_axes | top |
    |---|---|---|---|
    | 0 -1 | 0 | -1 | (2, 60) |
    | -1 | 1 | 2 | (2, 12, 5) |
    | 2 2 | 2 | 1 | (2, 3, 2, 2, 5) |
    | 1 | -1 | 0 | (2, 3, 4, 5, 1) |

    The top holds the same values in the same row-major order, so it *shares* the
    bottom's data and diff memory (`Blob.share_data` / `share_diff`): forward and backward
    have nothing to do,
    $$ y = x, \qquad \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}. $$
    Not in place: the top must be a different Blob (it needs its own shape).

    Bottom: x, any shape.   Top: y, the new shape (same count), sharing x's memory.

        layer { name: "reshape" type: "Reshape" bottom: "data" top: "flat"
                reshape_param { shape { dim: 0 dim: -1 } } }
    """

    type = "Reshape"
    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def _fail(self, message):
        raise MinicaffeError(f"{self.type} layer {self.name!r}: {message}")

    def layer_setup(self, bottom, top):
        if top[0] is bottom[0]:
            self._fail("does not allow in-place computation: give the top a new name")
        dims = list(self.layer_param.reshape_param.shape.dim)
        self.copy_axes = [i for i, d in enumerate(dims) if d == 0]
        inferred = [i for i, d in enumerate(dims) if d == -1]
        if len(inferred) > 1:
            self._fail(f"new shape {dims} contains more than one -1; at most one dim may be "
                       "inferred")
        if any(d < -1 for d in dims):
            self._fail(f"new shape {dims} has a dim below -1; dims are > 0, 0 (copy) or -1 (infer)")
        self.inferred_axis = inferred[0] if inferred else -1
        self.constant_count = prod(d for d in dims if d > 0)

    def reshape(self, bottom, top):
        param, shape = self.layer_param.reshape_param, bottom[0].shape
        n = len(shape)
        start = param.axis if param.axis >= 0 else n + param.axis + 1
        if not 0 <= start <= n:
            self._fail(f"axis {param.axis} is out of range for the {n}-D bottom of shape {shape}")
        if param.num_axes < -1:
            self._fail(f"num_axes must be >= 0, or -1 for all, got {param.num_axes}")
        end = n if param.num_axes == -1 else start + param.num_axes
        if end > n:
            self._fail(f"axis + num_axes = {end} is out of range for the {n}-D bottom of "
                       f"shape {shape}")
        new = list(param.shape.dim)
        for i in self.copy_axes:
            if start + i >= n:
                self._fail(f"new shape {list(param.shape.dim)} has a 0 at position {i}, but the "
                           f"bottom of shape {shape} has no axis {start + i} to copy")
            new[i] = shape[start + i]
        if self.inferred_axis >= 0:
            # Everything but the inferred dim is known; it takes what count is left.
            known = self.constant_count * prod(shape[:start]) * prod(shape[end:])
            known *= prod(new[i] for i in self.copy_axes)
            if known == 0 or bottom[0].count % known:
                self._fail(f"bottom count ({bottom[0].count}, shape {shape}) must be divisible "
                           f"by the product of the specified dimensions ({known})")
            new[self.inferred_axis] = bottom[0].count // known
        top_shape = shape[:start] + tuple(new) + shape[end:]
        if prod(top_shape) != bottom[0].count:
            self._fail(f"output count must match input count: shape {list(param.shape.dim)} "
                       f"gives top shape {top_shape} ({prod(top_shape)} values) for bottom "
                       f"shape {shape} ({bottom[0].count} values)")
        top[0].reshape(top_shape)
        top[0].share_data(bottom[0])
        top[0].share_diff(bottom[0])

    def forward_cpu(self, bottom, top):
        pass  # the top already shares the bottom's data

    def backward_cpu(self, top, propagate_down, bottom):
        pass  # the bottom already shares the top's diff

    # Sharing is not device-specific: the same buffers serve both engines.
    forward_gpu, backward_gpu = forward_cpu, backward_cpu
