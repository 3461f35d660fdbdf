"""ELU: known values, gradients (Caffe's checker settings), ELU with alpha 0 as ReLU,
in-place use, engines agree, bad input. Tests taking `mode` run once per engine (numpy,
OpenCL)."""
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


def elu_param(alpha=None, name=None):
    # alpha None leaves elu_param unset: the default alpha, 1.
    return layer_param("ELU", name=name, **({} if alpha is None else {"elu_param": {"alpha": alpha}}))


def elu(alpha=None):
    return create_layer(elu_param(alpha))


# Caffe tests the default (1) and 0 (ELU as ReLU); we add other non-negative values.
alphas = st.one_of(st.none(), st.just(0.0), st.floats(0.125, 3.0, width=32))


@pytest.mark.parametrize("alpha, expected, expected_dx", [
    # alpha 0.5: x = -ln 2 gives 0.5 (1/2 - 1) = -0.25, slope 0.5 e^-ln2 = 0.25 (= y + alpha);
    # x = 0 takes the negative side: y = 0, slope alpha; x = -100 saturates at -alpha.
    (0.5, [-0.25, 0.0, 1.5, -0.5], [0.25, 0.5, 1.0, 0.0]),
    # The default alpha, 1: -ln 2 gives -0.5 with slope 0.5.
    (None, [-0.5, 0.0, 1.5, -1.0], [0.5, 1.0, 1.0, 0.0]),
    # alpha 0 is ReLU: 0 on the negative side, slope 0 there (x = 0 included).
    (0.0, [0.0, 0.0, 1.5, 0.0], [0.0, 0.0, 1.0, 0.0]),
])
def test_known_values(mode, alpha, expected, expected_dx):
    x = [-math.log(2.0), 0.0, 1.5, -100.0]
    y, dx = run_one(elu(alpha), blob_from(x), Blob(), [2.0] * 4)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dx, np.multiply(expected_dx, 2.0), rtol=1e-6, atol=1e-7)


@given(bottom=blobs(max_side=4), alpha=alphas)
def test_gradient(mode, bottom, alpha):
    # Caffe's TestELUGradient / TestELUasReLUGradient: stepsize 1e-2, threshold 1e-3,
    # kink at 0 +- 0.01.
    checker = GradientChecker(1e-2, 1e-3, 1701, 0.0, 0.01)
    checker.check_gradient_eltwise(elu(alpha), [bottom], [Blob()])


@given(bottom=blobs(low=-4.0, high=4.0), alpha=alphas, seed=st.integers(0, 2**31 - 1))
def test_in_place_matches_out_of_place(mode, bottom, alpha, seed):
    # Backward reads the sign of x from the bottom; in place that is y, of the same sign.
    x = bottom.cpu_data().copy()
    dy = np.random.default_rng(seed).uniform(-1, 1, x.shape).astype(np.float32)
    y, dx = run_one(elu(alpha), blob_from(x), Blob(), dy)
    y_in, dx_in = run_one(elu(alpha), bottom, bottom, dy)  # top is the bottom blob
    np.testing.assert_array_equal(y_in, y)
    np.testing.assert_array_equal(dx_in, dx)


@given(bottom=blobs(low=-10.0, high=10.0), alpha=st.floats(0.0, 3.0, width=32))
def test_identity_above_zero_bounded_below(mode, bottom, alpha):
    # Caffe's TestELU: y = x for x > 0; on the negative side y lies in [-alpha, 0].
    layer, top = elu(alpha), Blob()
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    x, y = bottom.cpu_data(), top.cpu_data()
    np.testing.assert_array_equal(y[x > 0], x[x > 0])
    assert np.all((y[x <= 0] <= 0) & (y[x <= 0] >= -np.float32(alpha)))


@pytest.mark.opencl
@given(bottom=blobs(low=-6.0, high=6.0), alpha=st.one_of(alphas, st.floats(-2.0, 0.0, width=32)),
       seed=st.integers(0, 2**31 - 1))
def test_engines_agree(bottom, alpha, seed):
    # exp may differ by a few ulps between numpy and OpenCL: the default tolerance.
    compare_engines(elu_param(alpha), [bottom.cpu_data()], seed=seed)


@pytest.mark.opencl
@pytest.mark.parametrize("in_place", [False, True])
def test_device_path_makes_no_host_copies(in_place):
    x = np.float32([[-math.log(2.0), 2.0], [0.0, -100.0]])
    bottom = blob_from(x)
    top = bottom if in_place else Blob()
    layer = elu(1.0)
    with common.using_mode(common.GPU):
        layer.setup([bottom], [top])
        top.diff = np.ones_like(x)
        top.gpu_diff(), bottom.gpu_data()  # the inputs are on the device ...
        before = dict(SyncedMemory.transfers)
        layer.forward([bottom], [top])
        layer.backward([top], [True], [bottom])
        assert SyncedMemory.transfers == before  # ... and everything stays there
    np.testing.assert_allclose(bottom.cpu_diff(), [[0.5, 1], [1, 0]], rtol=1e-6, atol=1e-7)


def test_bad_blob_count(mode):
    layer = create_layer(elu_param(name="elu_bad"))
    with pytest.raises(MinicaffeError, match=r"ELU layer 'elu_bad' takes exactly 1 bottom"):
        layer.setup([Blob(2), Blob(2)], [Blob()])
