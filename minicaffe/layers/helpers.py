"""Helpers that several layers share; no layer imports another layer.

* `read_labels`: class labels checked against the scores they index (SoftmaxWithLoss,
  Accuracy).
* `launch_total`: a one-work-group OpenCL reduction that writes a scalar top on the
  device (the losses and Accuracy).
* `launch_per_slice`: one work-group per channel for per-channel OpenCL reductions
  (BatchNorm, Scale, Bias).
* `operand_shape`, `broadcast_dims`, `canonical_axis`: the axis rules of Scale and Bias.
* `hash_uniform`: counter-based uniforms that numpy and OpenCL draw alike (Dropout,
  STOCHASTIC Pooling); its device twin is `hash_uniform` in opencl/common.cl.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.common import MinicaffeError


def read_labels(layer, scores_shape: tuple, labels: np.ndarray, axis: int, ignore_label):
    """Labels as ints of shape (outer, inner) and the mask of positions that count.

    Used by SoftmaxWithLoss and Accuracy. Labels are truncated to int as Caffe's static_cast does;
    a label outside [0, C) that is not `ignore_label` is an error naming its position.
    The OpenCL engine checks them here too: labels come from the Data layer on the
    host, so reading them there costs no copy, and a bad label is a clear error
    rather than an out-of-bounds read on the device.
    """
    outer = int(np.prod(scores_shape[:axis]))
    channels = scores_shape[axis]
    if not np.all(np.isfinite(labels)):
        raise MinicaffeError(f"{layer.type} layer {layer.name!r}: labels must be finite numbers")
    label = labels.reshape(outer, -1).astype(np.int64)
    valid = np.ones(label.shape, dtype=bool) if ignore_label is None else label != ignore_label
    bad = valid & ((label < 0) | (label >= channels))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise MinicaffeError(
            f"{layer.type} layer {layer.name!r}: label {label[i, j]} at position {i * label.shape[1] + j} "
            f"is out of range [0, {channels}) for scores of shape {scores_shape} (axis {axis})")
    return label, valid


def launch_total(file: str, name: str, n: int, *args) -> None:
    """Run kernel `name` of `opencl/<file>` as one work-group over n values.

    Such a kernel adds up n per-position values with `group_sum` (opencl/common.cl) and
    has work-item 0 write the result into a scalar top; its last argument is the
    local-memory scratch passed here. One group is plenty for the few values a loss
    totals (one per position), and it needs no second pass or copy to the host.
    """
    import pyopencl  # only the OpenCL engine comes here

    launcher = opencl.kernel(file, name)
    group = launcher.work_group
    scratch = pyopencl.LocalMemory(group * np.dtype(opencl.DTYPE).itemsize)
    launcher.launch((group,), (group,), np.int32(n), *args, scratch)


def launch_per_slice(file: str, name: str, slices: int, length: int, *args) -> None:
    """Run kernel `name` of `opencl/<file>` as one work-group per slice.

    For per-channel reductions (BatchNorm's statistics, the Scale and Bias parameter
    gradients): `slices` independent sums of `length` values each. Work-group g owns
    slice g; its work-items add up their share and `group_sum` (opencl/common.cl) joins
    them, so each total is made on the device in one pass. The group is no larger than
    the slice (a slice of 1 value gets a group of 1), so many short slices still keep
    every work-item busy. The kernel's arguments are (slices, ..., scratch): the
    local-memory scratch is passed last, here.
    """
    import pyopencl  # only the OpenCL engine comes here

    if slices <= 0:
        return
    launcher = opencl.kernel(file, name)
    group = max(1, min(launcher.work_group, length))
    scratch = pyopencl.LocalMemory(group * np.dtype(opencl.DTYPE).itemsize)
    launcher.launch((slices * group,), (group,), np.int32(slices), *args, scratch)


def operand_shape(layer, bottom, axis: int, num_axes: int, what: str) -> tuple:
    """The shape of a learned operand that spans `num_axes` axes of `bottom` from `axis`.

    Scale and Bias learn a blob shaped like a run of the bottom's axes: `num_axes` of
    them from `axis`, or every remaining one for num_axes = -1 (0 gives a scalar).
    """
    axis = canonical_axis(layer, bottom, axis)
    if num_axes < -1:
        raise MinicaffeError(f"{layer.type} layer {layer.name!r}: num_axes must be non-negative, "
                             f"or -1 to extend to the end of the bottom; got {num_axes}")
    if num_axes >= 0 and bottom.num_axes < axis + num_axes:
        raise MinicaffeError(f"{layer.type} layer {layer.name!r}: the {what} blob would span "
                             f"{num_axes} axes from axis {axis}, past the end of bottom "
                             f"{bottom.name!r} of shape {bottom.shape}")
    return bottom.shape[axis:] if num_axes == -1 else bottom.shape[axis:axis + num_axes]


def broadcast_dims(layer, bottom, operand, axis: int, what: str) -> tuple[int, int, int]:
    """(outer, dim, inner): `bottom` viewed as (outer, dim, inner) around `operand`.

    `operand` (Scale's scale, Bias's bias) must match the bottom's axes from `axis` on,
    one for one; it then applies to every outer and inner position. A scalar operand
    matches anywhere, so its axis is taken as 0 (Caffe does the same).
    """
    axis = 0 if operand.num_axes == 0 else canonical_axis(layer, bottom, axis)
    span = bottom.shape[axis:axis + operand.num_axes]
    if bottom.num_axes < axis + operand.num_axes or span != operand.shape:
        raise MinicaffeError(f"{layer.type} layer {layer.name!r}: the {what} of shape "
                             f"{operand.shape} does not match bottom {bottom.name!r} of shape "
                             f"{bottom.shape} from axis {axis} (its axes there are {span})")
    return (bottom.count_range(0, axis), operand.count,
            bottom.count_range(axis + operand.num_axes))


def canonical_axis(layer, blob, axis: int) -> int:
    """`blob.canonical_axis_index(axis)`, with the layer named in the error."""
    try:
        return blob.canonical_axis_index(axis)
    except MinicaffeError as err:
        raise MinicaffeError(f"{layer.type} layer {layer.name!r}: {err}") from None


# SplitMix64's constants: the step added to the state ("golden gamma", 2^64 / phi) and the
# two multipliers of its output mix (Steele, Lea & Flood 2014; Vigna's splitmix64.c).
GAMMA = np.uint64(0x9E3779B97F4A7C15)
MIX1, MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def hash_uniform(seed, count: int) -> np.ndarray:
    r"""`count` float32 uniforms in [0, 1): $u_i$ = SplitMix64's output i for state `seed`.

    $$ z = \text{mix}(\text{seed} + (i + 1)\,\gamma) \bmod 2^{64}, \qquad
       u_i = \lfloor z / 2^{40} \rfloor \cdot 2^{-24} $$

    Each $u_i$ depends only on (seed, i), not on any earlier draw, so a device computes
    all of them in parallel and gets the same values: `hash_uniform` in
    `opencl/common.cl` repeats this function line for line. The top 24 bits make a
    float32 exactly, so the two engines agree bit for bit. (numpy's uint64 arithmetic wraps
    mod 2^64, as C's does.)
    """
    z = np.uint64(seed) + (np.arange(count, dtype=np.uint64) + np.uint64(1)) * GAMMA
    z = (z ^ (z >> np.uint64(30))) * MIX1
    z = (z ^ (z >> np.uint64(27))) * MIX2
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)
