"""Helpers that several layers share; no layer imports another layer.

* `read_labels`: class labels checked against the scores they index (SoftmaxWithLoss,
  Accuracy).
* `launch_total`: a one-work-group OpenCL reduction that writes a scalar top on the
  device (the losses and Accuracy).
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
    float32 exactly, so the two engines agree bit for bit. (numpy's uint64 arithmetic wraps mod 2^64, as C's does.)
    """
    z = np.uint64(seed) + (np.arange(count, dtype=np.uint64) + np.uint64(1)) * GAMMA
    z = (z ^ (z >> np.uint64(30))) * MIX1
    z = (z ^ (z >> np.uint64(27))) * MIX2
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)
