"""Lesson 01, reference solution: blobs and fillers."""
from math import prod

import numpy as np

from minicaffe.blob import Blob
from minicaffe.common import rng


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    count = prod(shape)
    fan_in = count // shape[0]
    fan_out = count // shape[1] if len(shape) > 1 else count
    return fan_in, fan_out


def xavier_fill(blob: Blob, variance_norm: str = "FAN_IN") -> None:
    fan_in, fan_out = fans(blob.shape)
    n = {"FAN_IN": fan_in, "FAN_OUT": fan_out, "AVERAGE": (fan_in + fan_out) / 2}[variance_norm]
    a = np.sqrt(3.0 / n)
    blob.mutable_cpu_data()[...] = rng().uniform(-a, a, blob.shape)


def blob_update(blob: Blob) -> None:
    blob.mutable_cpu_data()[...] -= blob.cpu_diff()
