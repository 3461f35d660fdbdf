"""Swish: known values, agreement with x times the Sigmoid layer on beta x (Caffe's own
construction), gradients (Caffe's checker: stepsize 1e-2, threshold 1e-3, kink 0 +- 0.01,
element-wise, beta 1, 1.5 and 0), in-place use, engines agree, bad input. Tests taking
`mode` run once per engine (numpy, OpenCL)."""
import math

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

BETAS = [1.0, 1.5, 0.0]  # Caffe's tests: the default, a beta, and beta 0 (linear)


def swish(beta=1.0, name="swish"):
    return create_layer(layer_param("Swish", name, swish_param={"beta": beta}))


def test_known_values(mode):
    # sigma(ln 3) = 3/4, so y(ln 3) = 0.75 ln 3 and, by the product rule,
    # dy/dx = sigma + x sigma (1 - sigma) = 0.75 + ln 3 * 3/16. y(0) = 0 with slope 1/2;
    # y(-ln 3) = -ln 3 / 4, slope 0.25 - ln 3 * 3/16.
    ln3 = math.log(3.0)
    y, dx = run_one(swish(), blob_from([ln3, 0.0, -ln3]), Blob(), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(y, [0.75 * ln3, 0.0, -0.25 * ln3], rtol=1e-6)
    np.testing.assert_allclose(dx, [0.75 + ln3 * 3 / 16, 0.5, 0.25 - ln3 * 3 / 16], rtol=1e-6)
    # beta = 2 at x = ln 3 / 2: sigma(ln 3) again, y = 0.375 ln 3;
    # dy/dx = sigma + beta x sigma (1 - sigma) = 0.75 + ln 3 * 3/16
    y, dx = run_one(swish(2.0), blob_from([ln3 / 2]), Blob(), [1.0])
    np.testing.assert_allclose(y, [0.375 * ln3], rtol=1e-6)
    np.testing.assert_allclose(dx, [0.75 + ln3 * 3 / 16], rtol=1e-6)


@given(bottom=blobs(low=-5.0, high=5.0))
def test_beta_zero_halves_the_input(mode, bottom):
    y, dx = run_one(swish(0.0), bottom, Blob(), np.ones(bottom.shape))
    np.testing.assert_array_equal(y, bottom.cpu_data() / 2)  # Caffe's TestSwishAsLinear
    np.testing.assert_array_equal(dx, np.full(bottom.shape, 0.5))


@given(bottom=blobs(low=-30.0, high=30.0), beta=st.sampled_from(BETAS + [-0.7, 4.0]))
def test_is_x_times_the_sigmoid_layer(mode, bottom, beta):
    # Caffe builds Swish from a Sigmoid layer; ours computes the sigmoid itself and must
    # give what that construction gives.
    x = bottom.cpu_data().copy()
    y, _ = run_one(swish(beta), bottom, Blob(), np.zeros(x.shape))
    sigmoid, scaled, s = create_layer(layer_param("Sigmoid")), blob_from(x * np.float32(beta)), Blob()
    sigmoid.setup([scaled], [s])
    sigmoid.forward([scaled], [s])
    expected = x * s.cpu_data()
    if common.mode() == common.CPU:
        np.testing.assert_array_equal(y, expected)
    else:  # a device compiler may fuse multiply-adds differently in the two kernels
        np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-7)


@given(bottom=blobs(max_side=4), beta=st.sampled_from(BETAS))
def test_gradient(mode, bottom, beta):
    checker = GradientChecker(1e-2, 1e-3, 1701, kink=0.0, kink_range=0.01)
    checker.check_gradient_eltwise(swish(beta), [bottom], [Blob()])


@given(bottom=blobs(low=-4.0, high=4.0), beta=st.sampled_from(BETAS), seed=st.integers(0, 2**31 - 1))
def test_in_place_matches_out_of_place(mode, bottom, beta, seed):
    x = bottom.cpu_data().copy()
    dy = np.random.default_rng(seed).uniform(-1, 1, x.shape)
    y, dx = run_one(swish(beta), blob_from(x), Blob(), dy)
    y_in, dx_in = run_one(swish(beta), bottom, bottom, dy)  # top is the bottom blob
    np.testing.assert_array_equal(y_in, y)
    np.testing.assert_array_equal(dx_in, dx)


@pytest.mark.opencl
@given(bottom=blobs(low=-8.0, high=8.0), beta=st.sampled_from(BETAS + [-0.7, 4.0]),
       seed=st.integers(0, 2**31 - 1))
def test_engines_agree(bottom, beta, seed):
    compare_engines(layer_param("Swish", swish_param={"beta": beta}), [bottom.cpu_data()], seed=seed)


@pytest.mark.opencl
@pytest.mark.parametrize("in_place", [False, True])
def test_device_path_makes_no_host_copies(in_place):
    x = np.float32([[-1.0, 2.0], [0.0, -3.0]])
    bottom = blob_from(x)
    top = bottom if in_place else Blob()
    layer = swish()
    with common.using_mode(common.GPU):
        layer.setup([bottom], [top])
        top.diff = np.ones_like(x)
        top.gpu_diff(), bottom.gpu_data()
        before = dict(SyncedMemory.transfers)
        layer.forward([bottom], [top])
        layer.backward([top], [True], [bottom])
        assert SyncedMemory.transfers == before
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(bottom.cpu_diff(), s + x * s * (1 - s), rtol=1e-5, atol=1e-7)


def test_bad_blob_count():
    with pytest.raises(MinicaffeError, match=r"Swish layer 'swish_bad' takes exactly 1 top"):
        swish(name="swish_bad").setup([blob_from([1.0])], [Blob(), Blob()])
