"""ReLU: known values, gradients (Caffe's checker settings), in-place use, engines agree,
bad input. Tests taking `mode` run once per engine (numpy, OpenCL)."""
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


def relu_param(slope=0.0):
    return layer_param("ReLU", relu_param={"negative_slope": slope})


def relu(slope=0.0):
    return create_layer(relu_param(slope))


@pytest.mark.parametrize("slope, expected, expected_dx", [
    (0.0, [0, 0, 0, 1.5], [0, 0, 0, 4]),
    (0.1, [-0.2, -0.05, 0, 1.5], [0.1, 0.2, 0.3, 4]),
])
def test_known_values(mode, slope, expected, expected_dx):
    bottom, top = blob_from([-2.0, -0.5, 0.0, 1.5]), Blob()
    layer = relu(slope)
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    np.testing.assert_allclose(top.cpu_data(), expected, rtol=1e-6)
    top.diff = [1, 2, 3, 4]
    layer.backward([top], [True], [bottom])
    # At x = 0 the gradient is the negative side's slope, as in Caffe (x <= 0).
    np.testing.assert_allclose(bottom.cpu_diff(), expected_dx, rtol=1e-6)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_infinities_as_caffe(mode):
    # Caffe's forward is max(x, 0) + slope * min(x, 0) in float arithmetic: at x = -inf
    # with slope 0 that is 0 + 0 * (-inf) = NaN, which is where a diverging net shows it.
    y, _ = run_one(relu(0.0), blob_from([-np.inf, np.inf, np.nan, -1.0, 2.0]), Blob(), [1.0] * 5)
    np.testing.assert_array_equal(y, [np.nan, np.inf, np.nan, 0.0, 2.0])


@given(bottom=blobs(max_side=4), slope=st.one_of(st.just(0.0), st.floats(-1.0, 2.0, width=32)))
def test_gradient(mode, bottom, slope):
    checker = GradientChecker(1e-2, 1e-3, 1701, 0.0, 0.01)
    checker.check_gradient_eltwise(relu(slope), [bottom], [Blob()])


@given(bottom=blobs(), slope=st.one_of(st.just(0.0), st.floats(0.0, 1.0, width=32)),
       seed=st.integers(0, 2**31 - 1))
def test_in_place_matches_out_of_place(mode, bottom, slope, seed):
    x = bottom.cpu_data().copy()
    dy = np.random.default_rng(seed).uniform(-1, 1, x.shape).astype(np.float32)
    y, dx = run_one(relu(slope), blob_from(x), Blob(), dy)
    y_in, dx_in = run_one(relu(slope), bottom, bottom, dy)  # top is the bottom blob
    np.testing.assert_array_equal(y_in, y)
    np.testing.assert_array_equal(dx_in, dx)


@given(bottom=blobs(), slope=st.floats(0.0, 1.0, width=32))
def test_output_keeps_sign_and_positive_part(mode, bottom, slope):
    layer, top = relu(slope), Blob()
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    x, y = bottom.cpu_data(), top.cpu_data()
    np.testing.assert_array_equal(y[x > 0], x[x > 0])
    assert np.all(np.sign(y[x < 0]) <= 0)
    np.testing.assert_allclose(y[x <= 0], np.float32(slope) * x[x <= 0], rtol=1e-6)


@pytest.mark.opencl
@given(bottom=blobs(), slope=st.one_of(st.just(0.0), st.floats(-1.0, 2.0, width=32)))
def test_engines_agree(bottom, slope):
    # Forward is exact on both; backward's dy * slope rounds once more in numpy (float64).
    compare_engines(relu_param(slope), [bottom.cpu_data()], rtol=1e-6, atol=0)


@pytest.mark.opencl
@pytest.mark.parametrize("in_place", [False, True])
def test_device_path_makes_no_host_copies(in_place):
    bottom = blob_from([[-1.0, 2.0], [0.5, -3.0]])
    top = bottom if in_place else Blob()
    layer = relu(0.1)
    with common.using_mode(common.GPU):
        layer.setup([bottom], [top])
        top.diff = [[1, 2], [3, 4]]
        top.gpu_diff(), bottom.gpu_data()  # the inputs are on the device ...
        before = dict(SyncedMemory.transfers)
        layer.forward([bottom], [top])
        layer.backward([top], [True], [bottom])
        assert SyncedMemory.transfers == before  # ... and everything stays there
    np.testing.assert_allclose(bottom.cpu_diff(), [[0.1, 2], [3, 0.4]], rtol=1e-6)


def test_bad_blob_count(mode):
    layer = create_layer(layer_param("ReLU", name="relu_bad"))
    with pytest.raises(MinicaffeError, match=r"ReLU layer 'relu_bad' takes exactly 1 bottom"):
        layer.setup([Blob(2), Blob(2)], [Blob()])
