"""Lesson 01: blobs and fillers. Complete the three functions marked TODO.

Check your work:   python -m pytest lessons/01_blobs_and_fillers
Try it:            python lessons/01_blobs_and_fillers/exercise.py
"""
import numpy as np

from minicaffe.blob import Blob
from minicaffe.common import rng


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight blob of this shape, as Caffe counts them.

    fan_in = count / shape[0]: the number of inputs feeding one output unit.
    fan_out = count / shape[1] (count itself for a 1-axis blob): the number of outputs
    one input feeds. For a convolution weight (K, C, kh, kw): (C kh kw, K kh kw).
    """
    raise NotImplementedError("TODO: lesson 01, fans")


def xavier_fill(blob: Blob, variance_norm: str = "FAN_IN") -> None:
    """Fill blob's data with U(-a, a), a = sqrt(3 / n), as Caffe's XavierFiller.

    n is fan_in, fan_out or (fan_in + fan_out) / 2 for variance_norm FAN_IN, FAN_OUT,
    AVERAGE. Draw from minicaffe's generator `rng()` (so `set_random_seed` makes the
    draw repeatable) and write the values INTO the blob: `blob.mutable_cpu_data()[...]`.
    """
    raise NotImplementedError("TODO: lesson 01, xavier_fill")


def blob_update(blob: Blob) -> None:
    """data -= diff, in place: the step every parameter takes (Blob.update on the CPU)."""
    raise NotImplementedError("TODO: lesson 01, blob_update")


if __name__ == "__main__":
    weights = Blob(20, 1, 5, 5, name="conv1.weight")  # LeNet's first convolution
    print("fans of", weights.shape, "=", fans(weights.shape))
    xavier_fill(weights)
    data = weights.cpu_data().copy()  # cpu_data() is a view: keep the values
    print(f"xavier values in [{data.min():.3f}, {data.max():.3f}], bound {np.sqrt(3 / 25):.3f}, "
          f"variance {data.var():.4f} (1/fan_in = {1 / 25:.4f})")
    weights.mutable_cpu_diff()[...] = 0.5 * weights.cpu_data()
    blob_update(weights)
    print("after data -= 0.5 data, the values halved:", np.allclose(weights.cpu_data(), 0.5 * data))
