"""Clip: known values (including the bounds and min > max), gradients (Caffe's checker
settings), engines agree, bad params. Tests taking `mode` run once per engine (numpy,
OpenCL)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicaffe import common
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.syncedmem import SyncedMemory
from minicaffe.testing import GradientChecker
from minicaffe.testing.engines import compare_engines
from tests.strategies import blob_from, blobs, layer_param, run_one


def clip_param(lo, hi, name=None):
    return layer_param("Clip", name=name, clip_param={"min": lo, "max": hi})


def clip(lo, hi):
    return create_layer(clip_param(lo, hi))


# Bounds drawn like Caffe's test (min -1, max 2), kept at least 0.5 apart.
bounds = st.tuples(st.floats(-2.0, 0.0, width=32), st.floats(0.5, 3.0, width=32)).map(
    lambda lw: (lw[0], float(np.float32(lw[0] + lw[1]))))


def test_known_values(mode):
    # min -1, max 2: below -1 gives -1, above 2 gives 2, in between passes. The gradient
    # passes on [-1, 2] including both bounds (Caffe's >= and <=) and is 0 outside.
    y, dx = run_one(clip(-1, 2), blob_from([-3.0, -1.0, 0.5, 2.0, 5.0]), Blob(), [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(y, [-1.0, -1.0, 0.5, 2.0, 2.0])
    np.testing.assert_array_equal(dx, [0.0, 2.0, 3.0, 4.0, 0.0])


def test_min_above_max_gives_min(mode):
    # max(min, min(x, max)) with min = 1 > max = -1: min(x, -1) <= -1 < 1, so every output
    # is 1, and no x satisfies 1 <= x <= -1, so every gradient is 0 (as in Caffe, unchecked).
    y, dx = run_one(clip(1, -1), blob_from([-2.0, 0.0, 2.0]), Blob(), [1, 1, 1])
    np.testing.assert_array_equal(y, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(dx, [0.0, 0.0, 0.0])


def away_from_bounds(x, lo, hi, eps):
    """Caffe's TestClipGradient moves inputs off the two kinks, where finite differences
    straddle the corner; here anything within 2 eps of a bound moves 3 eps past it, on
    the side it was on."""
    x = x.copy()
    for b in (lo, hi):
        near = np.abs(x - b) <= 2 * eps
        x[near] = b + np.where(x[near] >= b, 3 * eps, -3 * eps)
    return x


@given(bottom=blobs(max_side=4, low=-4.0, high=4.0), lo_hi=bounds)
def test_gradient(mode, bottom, lo_hi):
    # Caffe's TestClipGradient: stepsize 1e-2, threshold 1e-3, inputs kept off the bounds.
    lo, hi = lo_hi
    bottom = blob_from(away_from_bounds(bottom.cpu_data(), lo, hi, 1e-2))
    GradientChecker(1e-2, 1e-3).check_gradient_eltwise(clip(lo, hi), [bottom], [Blob()])


@given(bottom=blobs(low=-5.0, high=5.0), lo_hi=bounds)
def test_output_is_x_or_a_bound(mode, bottom, lo_hi):
    # Caffe's TestClip: inside the bounds y = x exactly; outside, the nearer bound.
    lo, hi = lo_hi
    layer, top = clip(lo, hi), Blob()
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    x, y = bottom.cpu_data(), top.cpu_data()
    assert np.all((y >= np.float32(lo)) & (y <= np.float32(hi)))
    inside = (x >= np.float32(lo)) & (x <= np.float32(hi))
    np.testing.assert_array_equal(y[inside], x[inside])
    assert np.all(y[x < np.float32(lo)] == np.float32(lo))
    assert np.all(y[x > np.float32(hi)] == np.float32(hi))


@pytest.mark.opencl
@given(bottom=blobs(low=-4.0, high=4.0), lo_hi=bounds, seed=st.integers(0, 2**31 - 1))
def test_engines_agree(bottom, lo_hi, seed):
    # Both are exact: comparisons forward, a product with 0 or 1 backward.
    compare_engines(clip_param(*lo_hi), [bottom.cpu_data()], seed=seed, rtol=0, atol=0)


@pytest.mark.opencl
def test_engines_agree_on_nan_and_min_above_max():
    # A NaN input stays NaN on both engines (OpenCL's fmin/fmax would drop it).
    x = np.float32([[np.nan, -3.0], [0.5, 3.0]])
    for lo, hi in ((-1, 2), (1, -1)):
        compare_engines(clip_param(lo, hi), [x], rtol=0, atol=0)


@pytest.mark.opencl
def test_device_path_makes_no_host_copies():
    bottom, top, layer = blob_from([[-3.0, -1.0], [0.5, 5.0]]), Blob(), clip(-1, 2)
    with common.using_mode(common.GPU):
        layer.setup([bottom], [top])
        top.diff = [[1, 2], [3, 4]]
        top.gpu_diff(), bottom.gpu_data()  # the inputs are on the device ...
        before = dict(SyncedMemory.transfers)
        layer.forward([bottom], [top])
        layer.backward([top], [True], [bottom])
        assert SyncedMemory.transfers == before  # ... and everything stays there
    np.testing.assert_array_equal(top.cpu_data(), [[-1, -1], [0.5, 2]])
    np.testing.assert_array_equal(bottom.cpu_diff(), [[0, 2], [3, 0]])


@pytest.mark.parametrize("fields, missing", [
    ({}, "min and max"), ({"clip_param": {"min": -1}}, "max"), ({"clip_param": {"max": 1}}, "min"),
])
def test_min_and_max_are_required(mode, fields, missing):
    # Required in Caffe's schema; optional in ours, so the layer checks.
    layer = create_layer(layer_param("Clip", name="clip_bad", **fields))
    with pytest.raises(MinicaffeError, match=rf"Clip layer 'clip_bad': clip_param needs both min "
                                             rf"and max .*; {missing} not given"):
        layer.setup([Blob(2)], [Blob()])


def test_bad_blob_count(mode):
    layer = create_layer(clip_param(-1, 1, name="clip_bad"))
    with pytest.raises(MinicaffeError, match=r"Clip layer 'clip_bad' takes exactly 1 bottom"):
        layer.setup([], [Blob()])
