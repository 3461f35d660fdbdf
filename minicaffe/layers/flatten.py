r"""Flatten: merge a range of axes into one, without copying.

Caffe: `flatten_layer.cpp`. No device twin is needed: no values are computed.
"""
from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer, register_layer


@register_layer
class FlattenLayer(Layer):
    r"""Collapse axes `axis` .. `end_axis` (inclusive; defaults 1 and -1) into one axis.

    A bottom of shape $(d_0, \dots, d_{n-1})$ gives a top of shape
    $$ (d_0, \dots, d_{a-1},\ \textstyle\prod_{i=a}^{e} d_i,\ d_{e+1}, \dots, d_{n-1}) $$
    with $a$ = `axis`, $e$ = `end_axis`, both allowed to count from the end (-1 is the
    last axis). The defaults turn (N, C, H, W) into (N, C·H·W), what InnerProduct expects.
    (As in Caffe, $e = a - 1$ is allowed and inserts an axis of size 1 at $a$.)

    The values are the same, in the same (row-major) order, so the top *shares* the
    bottom's data and diff memory (`Blob.share_data` / `share_diff`): forward and
    backward have nothing to do, and
    $$ y = x, \qquad \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y} $$
    hold by construction. Not in place: the top must be a different Blob (it needs its
    own shape).

    Bottom: x, any shape.   Top: y, the flattened shape, sharing x's memory.

        layer { name: "flat" type: "Flatten" bottom: "pool2" top: "flat"
                flatten_param { axis: 1 end_axis: -1 } }
    """

    type = "Flatten"
    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def _axis(self, blob, axis, what):
        try:
            return blob.canonical_axis_index(axis)
        except MinicaffeError as error:
            raise MinicaffeError(f"{self.type} layer {self.name!r}: {what} {axis} is out of "
                                 f"range for bottom shape {blob.shape} ({error})") from None

    def reshape(self, bottom, top):
        if top[0] is bottom[0]:
            raise MinicaffeError(f"{self.type} layer {self.name!r} does not allow in-place "
                                 "computation: give the top a new name")
        param, shape = self.layer_param.flatten_param, bottom[0].shape
        start = self._axis(bottom[0], param.axis, "axis")
        end = self._axis(bottom[0], param.end_axis, "end_axis")
        if end + 1 < start:
            raise MinicaffeError(f"{self.type} layer {self.name!r}: end_axis {param.end_axis} "
                                 f"comes before axis {param.axis} for bottom shape {shape}")
        top[0].reshape(shape[:start] + (bottom[0].count_range(start, end + 1),) + shape[end + 1:])
        top[0].share_data(bottom[0])
        top[0].share_diff(bottom[0])

    def forward_cpu(self, bottom, top):
        pass  # the top already shares the bottom's data

    def backward_cpu(self, top, propagate_down, bottom):
        pass  # the bottom already shares the top's diff

    # Sharing is not device-specific: the same buffers serve both engines.
    forward_gpu, backward_gpu = forward_cpu, backward_cpu
