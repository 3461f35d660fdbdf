"""Hypothesis strategies and small helpers shared by the layer tests."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st

from minicaffe.blob import Blob


def shapes(min_axes=1, max_axes=4, min_side=1, max_side=5):
    return st.lists(st.integers(min_side, max_side), min_size=min_axes, max_size=max_axes).map(tuple)


@st.composite
def blobs(draw, shape=None, low=-2.0, high=2.0, **shape_kwargs):
    """A Blob of float32 values drawn uniformly from [low, high) by a seeded generator."""
    shape = draw(shapes(**shape_kwargs)) if shape is None else shape
    seed = draw(st.integers(0, 2**31 - 1))
    blob = Blob(shape)
    blob.mutable_cpu_data()[...] = np.random.default_rng(seed).uniform(low, high, shape)
    return blob


def blob_from(array) -> Blob:
    array = np.asarray(array, dtype=np.float32)
    blob = Blob(array.shape)
    blob.mutable_cpu_data()[...] = array
    return blob


def layer_param(type_name: str, name: str | None = None, **fields):
    """A LayerParameter from keyword fields, e.g. layer_param("ReLU", relu_param={...})."""
    from google.protobuf import json_format

    from minicaffe.proto import caffe_pb2
    param = caffe_pb2.LayerParameter(name=name or type_name.lower(), type=type_name)
    json_format.ParseDict(fields, param)
    return param


def run_one(layer, bottom, top, dy):
    """Set up, forward, then backward from top diff `dy`: returns (top data, bottom diff).

    For one-bottom, one-top layers; `top` may be `bottom` itself to test in-place use.
    """
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    y = top.cpu_data().copy()
    top.diff = dy
    layer.backward([top], [True], [bottom])
    return y, bottom.cpu_diff().copy()


def run_loss(layer, prediction, target, loss_weight=None, num_tops=1):
    """Set up a loss layer on (prediction, target), run forward, then backward into the
    prediction only (the target is labels or a teacher's scores): returns (loss, tops,
    bottoms). `loss_weight` is the top diff backward starts from (the layer's own by default)."""
    bottom = [blob_from(prediction), blob_from(target)]
    tops = [Blob() for _ in range(num_tops)]
    layer.setup(bottom, tops)
    if loss_weight is not None:
        tops[0].diff = loss_weight
    loss = layer.forward(bottom, tops)
    layer.backward(tops, [True, False], bottom)
    return loss, tops, bottom
