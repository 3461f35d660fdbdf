"""Sigmoid: known values, gradients (Caffe's checker settings), in-place use, engines agree,
bad input. Tests taking `mode` run once per engine (numpy, OpenCL)."""
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


def sigmoid():
    return create_layer(layer_param("Sigmoid"))


def test_known_values(mode):
    # sigma(ln 3) = 3/4, sigma(-ln 3) = 1/4; sigma' = y (1 - y) = 3/16 at both.
    x = [0.0, math.log(3.0), -math.log(3.0), 100.0, -100.0]
    y, dx = run_one(sigmoid(), blob_from(x), Blob(), [1, 1, 2, 1, 1])
    np.testing.assert_allclose(y, [0.5, 0.75, 0.25, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(dx, [0.25, 0.1875, 0.375, 0, 0], atol=1e-6)


@given(bottom=blobs(max_side=4, low=-4.0, high=4.0),
       engine=st.sampled_from(["DEFAULT", "CAFFE"]))
def test_gradient(mode, bottom, engine):
    layer = create_layer(layer_param("Sigmoid", sigmoid_param={"engine": engine}))
    checker = GradientChecker(1e-2, 1e-3, 1701, 0.0, 0.01)
    checker.check_gradient_eltwise(layer, [bottom], [Blob()])


@given(bottom=blobs(low=-6.0, high=6.0), seed=st.integers(0, 2**31 - 1))
def test_in_place_matches_out_of_place(mode, bottom, seed):
    x = bottom.cpu_data().copy()
    dy = np.random.default_rng(seed).uniform(-1, 1, x.shape).astype(np.float32)
    y, dx = run_one(sigmoid(), blob_from(x), Blob(), dy)
    y_in, dx_in = run_one(sigmoid(), bottom, bottom, dy)  # top is the bottom blob
    np.testing.assert_array_equal(y_in, y)
    np.testing.assert_array_equal(dx_in, dx)


@given(bottom=blobs(low=-20.0, high=20.0))
def test_range_symmetry_and_no_overflow(mode, bottom):
    top, layer = Blob(), sigmoid()
    layer.setup([bottom], [top])
    with np.errstate(all="raise"):  # the tanh form must not overflow for large |x|
        layer.forward([bottom], [top])
    x, y = bottom.cpu_data().astype(np.float64), top.cpu_data()
    assert np.all((y >= 0) & (y <= 1))
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-x)), atol=1e-6)
    minus, top_minus = blob_from(-x), Blob()
    layer.forward([minus], [top_minus])
    np.testing.assert_allclose(y + top_minus.cpu_data(), 1.0, atol=1e-6)  # sigma(-x) = 1 - sigma(x)


@pytest.mark.opencl
@given(bottom=blobs(low=-10.0, high=10.0), engine=st.sampled_from(["DEFAULT", "CAFFE"]),
       seed=st.integers(0, 2**31 - 1))
def test_engines_agree(bottom, engine, seed):
    # OpenCL's tanh may differ from numpy's by a few ulps: the default tolerance.
    param = layer_param("Sigmoid", sigmoid_param={"engine": engine})
    compare_engines(param, [bottom.cpu_data()], seed=seed)


@pytest.mark.opencl
@pytest.mark.parametrize("in_place", [False, True])
def test_device_path_makes_no_host_copies(in_place):
    x = np.float32([[-1.0, 2.0], [0.5, -3.0]])
    bottom = blob_from(x)
    top = bottom if in_place else Blob()
    layer = sigmoid()
    with common.using_mode(common.GPU):
        layer.setup([bottom], [top])
        top.diff = np.ones_like(x)
        top.gpu_diff(), bottom.gpu_data()  # the inputs are on the device ...
        before = dict(SyncedMemory.transfers)
        layer.forward([bottom], [top])
        layer.backward([top], [True], [bottom])
        assert SyncedMemory.transfers == before  # ... and everything stays there
    y = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(bottom.cpu_diff(), y * (1 - y), rtol=1e-5)


def test_bad_blob_count(mode):
    layer = create_layer(layer_param("Sigmoid", name="sig_bad"))
    with pytest.raises(MinicaffeError, match=r"Sigmoid layer 'sig_bad' takes exactly 1 top"):
        layer.setup([Blob(2)], [Blob(), Blob()])
