"""Softmax: known values, probabilities along any axis, stability, gradients, the OpenCL
twin against numpy, bad input."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.syncedmem import SyncedMemory
from minicaffe.testing import GradientChecker
from minicaffe.testing.engines import compare_engines
from tests.strategies import blob_from, blobs, layer_param


def softmax(axis=1):
    return create_layer(layer_param("Softmax", softmax_param={"axis": axis}))


def forward(layer, bottom):
    top = Blob()
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    return top


def test_known_values(mode):
    # e^0, e^1, e^2 over their sum 1 + e + e^2 = 11.107337...
    top = forward(softmax(), blob_from([[0, 1, 2], [5, 5, 5]]))
    np.testing.assert_allclose(top.cpu_data(), [[0.09003057, 0.24472847, 0.66524096],
                                                [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)


def test_known_gradient(mode):
    # p = (1/2, 1/2), dE/dp = (1, 0): dE/dx = p * (dy - p.dy) = (1/4, -1/4)
    layer, bottom = softmax(), blob_from([[3, 3]])
    top = forward(layer, bottom)
    top.diff = [[1, 0]]
    layer.backward([top], [True], [bottom])
    np.testing.assert_allclose(bottom.cpu_diff(), [[0.25, -0.25]], rtol=1e-6)


def test_large_scores_do_not_overflow(mode):
    top = forward(softmax(), blob_from([[1000, 1000, -1000], [88, 89, 90]]))
    assert np.all(np.isfinite(top.cpu_data()))
    np.testing.assert_allclose(top.cpu_data()[0], [0.5, 0.5, 0], atol=1e-7)
    np.testing.assert_allclose(top.cpu_data()[1], [0.09003057, 0.24472847, 0.66524096], rtol=1e-5)


@st.composite
def blob_and_axis(draw, max_side=4):
    bottom = draw(blobs(low=-5, high=5, max_side=max_side))
    return bottom, draw(st.integers(-bottom.num_axes, bottom.num_axes - 1))


@given(blob_and_axis(), st.floats(-50, 50, width=32))
def test_probabilities_along_axis_and_shift_invariance(mode, bottom_axis, shift):
    bottom, axis = bottom_axis
    y = forward(softmax(axis), bottom).cpu_data().copy()
    assert np.all(y >= 0)
    np.testing.assert_allclose(y.sum(axis=axis), 1, rtol=1e-5)
    # Independent formula, in float64.
    x = bottom.cpu_data().astype(np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    np.testing.assert_allclose(y, e / e.sum(axis=axis, keepdims=True), rtol=1e-5, atol=1e-7)
    shifted = forward(softmax(axis), blob_from(bottom.cpu_data() + np.float32(shift))).cpu_data()
    np.testing.assert_allclose(shifted, y, rtol=1e-4, atol=1e-6)


@given(blob_and_axis(max_side=3))
def test_gradient(mode, bottom_axis):
    bottom, axis = bottom_axis
    GradientChecker(1e-2, 1e-3).check_gradient_exhaustive(softmax(axis), [bottom], [Blob()])


def test_in_place_matches_out_of_place(mode):
    x = np.random.default_rng(3).standard_normal((2, 4, 3)).astype(np.float32)
    dy = np.random.default_rng(4).standard_normal(x.shape).astype(np.float32)
    results = []
    for in_place in (False, True):
        layer, bottom = softmax(), blob_from(x)
        top = bottom if in_place else Blob()
        layer.setup([bottom], [top])
        layer.forward([bottom], [top])
        y = top.cpu_data().copy()
        top.diff = dy
        layer.backward([top], [True], [bottom])
        results.append((y, bottom.cpu_diff().copy()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-6)


# ---- the OpenCL twin
@given(blob_and_axis(max_side=5), st.sampled_from([1.0, 30.0]))
def test_engines_agree(gpu_only, bottom_axis, scale):
    # scale 30 spreads the scores so that some probabilities underflow towards 0.
    bottom, axis = bottom_axis
    compare_engines(layer_param("Softmax", softmax_param={"axis": axis}),
                    [bottom.cpu_data() * np.float32(scale)])


def test_data_stays_on_the_device(gpu_only):
    # With the bottom data and the top diff only on the device (as between layers of a
    # net), forward and backward copy nothing either way: a host read would be counted.
    layer, bottom, top = softmax(), blob_from(np.ones((4, 5, 3))), Blob()
    layer.setup([bottom], [top])
    bottom.mutable_gpu_data()
    top.mutable_gpu_diff()
    before = dict(SyncedMemory.transfers)
    layer.forward([bottom], [top])
    layer.backward([top], [True], [bottom])
    assert SyncedMemory.transfers == before


def test_bad_axis(mode):
    with pytest.raises(MinicaffeError, match="axis 2 out of range"):
        softmax(axis=2).setup([blob_from(np.zeros((2, 3)))], [Blob()])
