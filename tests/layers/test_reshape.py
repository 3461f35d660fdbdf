"""Reshape: Caffe's shape rules (0 copies, -1 infers, axis, num_axes), sharing, engines agree,
errors. Tests taking `mode` run once per engine (numpy, OpenCL)."""
from math import prod

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.layers.reshape import ReshapeLayer
from minicaffe.testing import GradientChecker
from minicaffe.testing.engines import compare_engines
from tests.strategies import blob_from, blobs, layer_param, shapes


def reshape(dims, name="reshape", **fields):
    return create_layer(layer_param("Reshape", name=name,
                                    reshape_param={"shape": {"dim": list(dims)}, **fields}))


# The cases of Caffe's test_reshape_layer.cpp, on its 2 x 3 x 6 x 5 bottom.
@pytest.mark.parametrize("dims, fields, shape", [
    ([0, -1, 1, 1], {}, (2, 90, 1, 1)),               # TestFlattenOutputSizes
    ([0, 0, 0, 0], {}, (2, 3, 6, 5)),                 # TestCopyDimensions
    ([0, 3, 10, -1], {}, (2, 3, 10, 3)),              # TestInferenceOfUnspecified
    ([3, 10, -1], {"axis": 1}, (2, 3, 10, 3)),        # ... WithStartAxis
    ([1, 1, 1], {"axis": 0, "num_axes": 0}, (1, 1, 1, 2, 3, 6, 5)),   # TestInsertSingletonAxesStart
    ([1, 1, 1], {"axis": 2, "num_axes": 0}, (2, 3, 1, 1, 1, 6, 5)),   # ... Middle
    ([1, 1, 1], {"axis": -1, "num_axes": 0}, (2, 3, 6, 5, 1, 1, 1)),  # ... End
    ([-1], {"axis": 1, "num_axes": 2}, (2, 18, 5)),   # TestFlattenMiddle
    ([6, 2, 3, 5], {}, (6, 2, 3, 5)),                 # TestForward
    ([-1], {"axis": -3}, (2, 3, 30)),                 # -3 is the gap before the 6
])
def test_known_shapes(mode, dims, fields, shape):
    x = np.arange(180, dtype=np.float32).reshape(2, 3, 6, 5)
    bottom, top, layer = blob_from(x), Blob(), reshape(dims, **fields)
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    assert top.shape == shape
    np.testing.assert_array_equal(top.cpu_data(), x.reshape(shape))


def test_forward_after_bottom_reshape(mode):
    # As Caffe's TestForwardAfterReshape: a new bottom shape flows through on forward.
    bottom, top, layer = Blob(2, 3, 6, 5), Blob(), reshape([0, -1])
    layer.setup([bottom], [top])
    bottom.reshape(4, 3, 6, 5)
    bottom.data = np.arange(360).reshape(4, 3, 6, 5)
    layer.forward([bottom], [top])
    assert top.shape == (4, 90)
    np.testing.assert_array_equal(top.cpu_data(), np.arange(360).reshape(4, 90))


@st.composite
def factors(draw, total):
    """A list of positive dims whose product is `total` (1s included now and then)."""
    dims, left = [], total
    for _ in range(draw(st.integers(0, 3))):
        d = draw(st.sampled_from([d for d in range(1, left + 1) if left % d == 0]))
        dims.append(d)
        left //= d
    if left != 1 or draw(st.booleans()):
        dims.append(left)
    return draw(st.permutations(dims))


@st.composite
def reshape_cases(draw):
    """(bottom, dims, axis, num_axes, expected top shape) following Caffe's rules."""
    shape = draw(shapes(min_axes=1, max_axes=4, max_side=4))
    bottom = draw(blobs(shape=shape))
    n = len(shape)
    start = draw(st.integers(0, n))
    end = draw(st.integers(start, n))
    concrete = list(draw(factors(prod(shape[start:end]))))
    dims = list(concrete)
    if dims and draw(st.booleans()):
        dims[draw(st.integers(0, len(dims) - 1))] = -1
    for i, d in enumerate(dims):  # 0 copies the bottom dim at the same position
        if d > 0 and start + i < n and shape[start + i] == d and draw(st.booleans()):
            dims[i] = 0
    axis = draw(st.sampled_from([start, start - n - 1]))  # -1 is after the last axis
    num_axes = -1 if end == n and draw(st.booleans()) else end - start
    return bottom, dims, axis, num_axes, shape[:start] + tuple(concrete) + shape[end:]


@given(case=reshape_cases())
def test_shape_rules_property(mode, case):
    bottom, dims, axis, num_axes, expected = case
    top, layer = Blob(), reshape(dims, axis=axis, num_axes=num_axes)
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    assert top.shape == expected
    np.testing.assert_array_equal(top.cpu_data(), bottom.cpu_data().reshape(expected))


@given(case=reshape_cases())
def test_gradient(mode, case):
    bottom, dims, axis, num_axes, _ = case
    layer = reshape(dims, axis=axis, num_axes=num_axes)
    GradientChecker(1e-2, 1e-2).check_gradient_eltwise(layer, [bottom], [Blob()])


@given(case=reshape_cases(), value=st.floats(-10, 10, width=32))
def test_top_shares_bottom_memory(mode, case, value):
    bottom, dims, axis, num_axes, _ = case
    top, layer = Blob(), reshape(dims, axis=axis, num_axes=num_axes)
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    bottom.mutable_cpu_data().reshape(-1)[0] = value  # written after forward ...
    assert top.cpu_data().reshape(-1)[0] == value     # ... and seen in the top: no copy
    top.mutable_cpu_diff()[...] = -2.0
    layer.backward([top], [True], [bottom])
    assert np.all(bottom.cpu_diff() == -2.0)
    assert top.data_mem is bottom.data_mem and top.diff_mem is bottom.diff_mem


def test_device_body_is_the_host_body():
    # Nothing is computed, only memory shared, so one body serves both engines.
    assert ReshapeLayer.forward_gpu is ReshapeLayer.forward_cpu
    assert ReshapeLayer.backward_gpu is ReshapeLayer.backward_cpu


@pytest.mark.opencl
@given(case=reshape_cases())
def test_engines_agree(case):
    bottom, dims, axis, num_axes, _ = case
    param = layer_param("Reshape", reshape_param={"shape": {"dim": dims}, "axis": axis,
                                                  "num_axes": num_axes})
    compare_engines(param, [bottom.cpu_data()], rtol=0, atol=0)


@pytest.mark.parametrize("dims, fields, message", [
    ([-1, -1], {}, r"more than one -1"),
    ([2, -2, 5], {}, r"has a dim below -1"),
    ([0, 0, 0, 0, 0], {}, r"0 at position 4, but the bottom of shape \(2, 3, 4, 5\) has no axis 4"),
    ([7, -1], {}, r"bottom count \(120, shape \(2, 3, 4, 5\)\) must be divisible by .* \(7\)"),
    ([0, 0, 7, -1], {}, r"must be divisible by the product of the specified dimensions \(42\)"),
    ([2, 3], {}, r"output count must match input count: .* top shape \(2, 3\) \(6 values\)"),
    ([1], {"axis": 5}, r"axis 5 is out of range for the 4-D bottom"),
    ([1], {"axis": -6}, r"axis -6 is out of range"),
    ([1], {"num_axes": -2}, r"num_axes must be >= 0, or -1 for all, got -2"),
    ([60], {"axis": 2, "num_axes": 3}, r"axis \+ num_axes = 5 is out of range"),
])
def test_bad_params(mode, dims, fields, message):
    layer = reshape(dims, name="reshape_bad", **fields)
    with pytest.raises(MinicaffeError, match=r"Reshape layer 'reshape_bad': .*" + message):
        layer.setup([Blob(2, 3, 4, 5)], [Blob()])


def test_in_place_refused(mode):
    blob = Blob(2, 3)
    with pytest.raises(MinicaffeError,
                       match=r"Reshape layer 'reshape_bad': does not allow in-place"):
        reshape([-1], name="reshape_bad").setup([blob], [blob])
