r"""Fillers: how a learnable blob gets its first values (Caffe's `filler.hpp`).

Every filler draws from `minicaffe.common.rng()`, so a solver's `random_seed`
makes initialisation repeatable. `fan_in` is the number of inputs feeding one output
(count / shape[0]), `fan_out` the number of outputs one input feeds (count / shape[1]).

| type | values |
|---|---|
| constant | `value` |
| uniform | $U(\text{min}, \text{max})$ |
| gaussian | $N(\text{mean}, \text{std}^2)$; with `sparse` = s, each weight is kept with probability s / num_outputs |
| xavier | $U(-a, a)$, $a = \sqrt{3 / n}$ |
| msra | $N(0, 2 / n)$ |
| positive_unitball | $U(0, 1)$, then each row (over all but the first axis) divided by its sum |
| bilinear | the weights of bilinear upsampling, for deconvolution |

For xavier and msra, $n$ is `fan_in`, `fan_out` or their mean, by `variance_norm`.
"""
from __future__ import annotations

import numpy as np

from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError, rng
from minicaffe.proto import caffe_pb2

FAN_IN, FAN_OUT, AVERAGE = (caffe_pb2.FillerParameter.FAN_IN, caffe_pb2.FillerParameter.FAN_OUT,
                            caffe_pb2.FillerParameter.AVERAGE)


def _fans(blob: Blob) -> tuple[int, int]:
    if blob.num_axes < 1 or blob.count == 0:
        raise MinicaffeError(f"cannot fill blob {blob.name!r} of shape {blob.shape}")
    fan_in = blob.count // blob.shape[0]
    fan_out = blob.count // blob.shape[1] if blob.num_axes > 1 else blob.count
    return fan_in, fan_out


def _variance_n(blob: Blob, param) -> float:
    fan_in, fan_out = _fans(blob)
    return {FAN_IN: fan_in, FAN_OUT: fan_out, AVERAGE: (fan_in + fan_out) / 2}[param.variance_norm]


def fill(blob: Blob, param) -> None:
    """Fill `blob.data` as the FillerParameter `param` says."""
    shape, kind = blob.shape, param.type
    if kind == "constant":
        values = np.full(shape, param.value)
    elif kind == "uniform":
        values = rng().uniform(param.min, param.max, shape)
    elif kind == "gaussian":
        values = rng().normal(param.mean, param.std, shape)
        if param.sparse >= 0:
            # Keep on average `sparse` non-zero inputs per output unit.
            if blob.num_axes < 2:
                raise MinicaffeError("sparse gaussian filler needs a blob of at least 2 axes")
            values *= rng().random(shape) < param.sparse / shape[0]
    elif kind == "xavier":
        scale = np.sqrt(3.0 / _variance_n(blob, param))
        values = rng().uniform(-scale, scale, shape)
    elif kind == "msra":
        values = rng().normal(0.0, np.sqrt(2.0 / _variance_n(blob, param)), shape)
    elif kind == "positive_unitball":
        values = rng().uniform(0.0, 1.0, shape).reshape(shape[0], -1)
        values /= values.sum(axis=1, keepdims=True)
    elif kind == "bilinear":
        values = _bilinear(shape)
    else:
        raise MinicaffeError(f"unknown filler type {kind!r}; known: constant, uniform, gaussian, "
                             "xavier, msra, positive_unitball, bilinear")
    blob.mutable_cpu_data()[...] = np.asarray(values, dtype=np.float32).reshape(shape)


def _bilinear(shape: tuple[int, ...]) -> np.ndarray:
    """Caffe's BilinearFiller: a separable tent of width 2f centred at c."""
    if len(shape) != 4 or shape[2] != shape[3]:
        raise MinicaffeError(f"bilinear filler needs a 4-D blob with square kernels, got {shape}")
    k = shape[3]
    f = np.ceil(k / 2.0)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    tent = 1 - np.abs(np.arange(k) / f - c)
    return np.broadcast_to(np.outer(tent, tent), shape)
