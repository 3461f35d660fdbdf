"""Flatten: output shapes, values, shared memory, gradients, engines agree, bad input.
Tests taking `mode` run once per engine (numpy, OpenCL)."""
from math import prod

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.layers.flatten import FlattenLayer
from minicaffe.testing import GradientChecker
from minicaffe.testing.engines import compare_engines
from tests.strategies import blob_from, blobs, layer_param


def flatten(**fields):
    return create_layer(layer_param("Flatten", flatten_param=fields))


@pytest.mark.parametrize("fields, shape", [
    ({}, (2, 90)),
    ({"axis": 2}, (2, 3, 30)),
    ({"end_axis": -2}, (2, 18, 5)),
    ({"axis": 0, "end_axis": 1}, (6, 6, 5)),
    ({"axis": -1}, (2, 3, 6, 5)),
    ({"axis": 2, "end_axis": 1}, (2, 3, 1, 6, 5)),  # end = axis - 1: Caffe inserts a 1
])
def test_known_shapes(mode, fields, shape):
    bottom, top = Blob(2, 3, 6, 5), Blob()
    flatten(**fields).setup([bottom], [top])
    assert top.shape == shape


def test_known_values(mode):
    # As Caffe's TestForward: top[n, c] == bottom[n, c / 30, (c / 5) % 6, c % 5].
    x = np.arange(2 * 3 * 6 * 5, dtype=np.float32).reshape(2, 3, 6, 5)
    bottom, top, layer = blob_from(x), Blob(), flatten()
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    for c in range(90):
        assert top.cpu_data()[1, c] == x[1, c // 30, (c // 5) % 6, c % 5]


@st.composite
def flatten_cases(draw):
    bottom = draw(blobs(min_axes=1, max_axes=4, max_side=4))
    n = bottom.num_axes
    start = draw(st.integers(0, n - 1))
    end = draw(st.integers(start, n - 1))
    # Either index may be written counting from the end.
    axis = start - n if draw(st.booleans()) else start
    end_axis = end - n if draw(st.booleans()) else end
    return bottom, axis, end_axis, start, end


@given(case=flatten_cases())
def test_shape_and_values_property(mode, case):
    bottom, axis, end_axis, start, end = case
    top, layer = Blob(), flatten(axis=axis, end_axis=end_axis)
    layer.setup([bottom], [top])
    shape = bottom.shape
    assert top.shape == shape[:start] + (prod(shape[start:end + 1]),) + shape[end + 1:]
    layer.forward([bottom], [top])
    np.testing.assert_array_equal(top.cpu_data().ravel(), bottom.cpu_data().ravel())


@given(case=flatten_cases())
def test_gradient(mode, case):
    bottom, axis, end_axis, _, _ = case
    layer = flatten(axis=axis, end_axis=end_axis)
    GradientChecker(1e-2, 1e-2).check_gradient_eltwise(layer, [bottom], [Blob()])


@given(case=flatten_cases(), value=st.floats(-10, 10, width=32))
def test_top_shares_bottom_memory(mode, case, value):
    bottom, axis, end_axis, _, _ = case
    top, layer = Blob(), flatten(axis=axis, end_axis=end_axis)
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    bottom.mutable_cpu_data().reshape(-1)[-1] = value   # written after forward ...
    assert top.cpu_data().reshape(-1)[-1] == value      # ... and seen in the top: no copy
    top.mutable_cpu_diff()[...] = 3.0
    layer.backward([top], [True], [bottom])
    assert np.all(bottom.cpu_diff() == 3.0)
    assert top.data_mem is bottom.data_mem and top.diff_mem is bottom.diff_mem


def test_device_body_is_the_host_body():
    # Nothing is computed, only memory shared, so one body serves both engines.
    assert FlattenLayer.forward_gpu is FlattenLayer.forward_cpu
    assert FlattenLayer.backward_gpu is FlattenLayer.backward_cpu


@pytest.mark.opencl
@given(case=flatten_cases())
def test_engines_agree(case):
    bottom, axis, end_axis, _, _ = case
    param = layer_param("Flatten", flatten_param={"axis": axis, "end_axis": end_axis})
    compare_engines(param, [bottom.cpu_data()], rtol=0, atol=0)


@pytest.mark.parametrize("fields, bottom, message", [
    ({"axis": 4}, (2, 3, 4, 5), r"axis 4 is out of range for bottom shape \(2, 3, 4, 5\)"),
    ({"end_axis": -5}, (2, 3, 4, 5), r"end_axis -5 is out of range"),
    ({"axis": 3, "end_axis": 1}, (2, 3, 4, 5), r"end_axis 1 comes before axis 3"),
])
def test_bad_params(mode, fields, bottom, message):
    layer = create_layer(layer_param("Flatten", name="flat_bad", flatten_param=fields))
    with pytest.raises(MinicaffeError, match=r"Flatten layer 'flat_bad': " + message):
        layer.setup([Blob(bottom)], [Blob()])


def test_in_place_refused(mode):
    blob = Blob(2, 3)
    layer = create_layer(layer_param("Flatten", name="flat_bad"))
    with pytest.raises(MinicaffeError, match=r"Flatten layer 'flat_bad' does not allow in-place"):
        layer.setup([blob], [blob])
