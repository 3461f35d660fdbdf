"""BNLL (softplus): known values, gradients (Caffe's checker settings), extreme inputs,
engines agree, bad input. Tests taking `mode` run once per engine (numpy, OpenCL)."""
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


def bnll(name=None):
    return create_layer(layer_param("BNLL", name=name))


def test_known_values(mode):
    # y = ln(1 + e^x), dy/dx = e^x / (1 + e^x):
    #   x = 0:      ln 2,            1/2
    #   x = ln 3:   ln 4,            3/4
    #   x = -ln 3:  ln(4/3),         1/4
    #   x = 100:    100 + ln(1 + e^-100) = 100 (e^100 itself overflows float32), slope 1
    #               (not NaN: backward clamps x at 50 before exponentiating)
    #   x = -100:   about e^-100 = 4e-44, slope about 0
    x = [0.0, math.log(3.0), -math.log(3.0), 100.0, -100.0]
    y, dx = run_one(bnll(), blob_from(x), Blob(), [2.0] * 5)
    np.testing.assert_allclose(y, [math.log(2), math.log(4), math.log(4 / 3), 100.0, 0.0],
                               rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(dx, [1.0, 1.5, 0.5, 2.0, 0.0], rtol=1e-6, atol=1e-30)


@given(bottom=blobs(max_side=4, low=-3.0, high=3.0))
def test_gradient(mode, bottom):
    # Caffe's TestBNLLGradient: stepsize 1e-2, threshold 1e-3, no kink (BNLL is smooth).
    checker = GradientChecker(1e-2, 1e-3)
    checker.check_gradient_eltwise(bnll(), [bottom], [Blob()])


@given(bottom=blobs(low=-30.0, high=30.0))
def test_softplus_identities(mode, bottom):
    # Caffe's TestBNLL asks y >= 0 and y >= x; softplus(x) - softplus(-x) = x ties the two
    # branches of the stable form together (a wrong sign in either breaks it).
    layer, top = bnll(), Blob()
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    x, y = bottom.cpu_data(), top.cpu_data().copy()
    assert np.all(y >= 0) and np.all(y >= x)
    layer.forward([blob_from(-x)], [top])
    np.testing.assert_allclose(y - top.cpu_data(), x, rtol=1e-6, atol=2e-6)


@given(x=st.floats(-200.0, 200.0, width=32))
def test_extreme_inputs_stay_finite(mode, x):
    # e^x overflows float32 past x = 88.7; neither direction may produce inf or NaN.
    y, dx = run_one(bnll(), blob_from([x]), Blob(), [1.0])
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    assert 0 <= dx[0] <= 1


@pytest.mark.opencl
@given(bottom=blobs(low=-60.0, high=60.0), seed=st.integers(0, 2**31 - 1))
def test_engines_agree(bottom, seed):
    # exp and log1p may differ by a few ulps between numpy and OpenCL: the default tolerance.
    compare_engines(layer_param("BNLL"), [bottom.cpu_data()], seed=seed)


@pytest.mark.opencl
def test_device_path_makes_no_host_copies():
    bottom, top, layer = blob_from([[0.0, 100.0], [-100.0, 0.0]]), Blob(), bnll()
    with common.using_mode(common.GPU):
        layer.setup([bottom], [top])
        top.diff = [[2, 2], [2, 2]]
        top.gpu_diff(), bottom.gpu_data()  # the inputs are on the device ...
        before = dict(SyncedMemory.transfers)
        layer.forward([bottom], [top])
        layer.backward([top], [True], [bottom])
        assert SyncedMemory.transfers == before  # ... and everything stays there
    np.testing.assert_allclose(top.cpu_data(), [[math.log(2), 100], [0, math.log(2)]], rtol=1e-6,
                               atol=1e-30)
    np.testing.assert_allclose(bottom.cpu_diff(), [[1, 2], [0, 1]], rtol=1e-6, atol=1e-30)


def test_bad_blob_count(mode):
    with pytest.raises(MinicaffeError, match=r"BNLL layer 'bnll_bad' takes exactly 1 top"):
        bnll("bnll_bad").setup([Blob(2)], [Blob(), Blob()])
