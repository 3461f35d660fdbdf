"""TanH: known values, gradients (Caffe's checker settings), in-place use, engines agree,
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


def tanh():
    return create_layer(layer_param("TanH"))


def test_known_values(mode):
    # tanh(ln 2) = (2 - 1/2) / (2 + 1/2) = 0.6, and 1 - 0.6^2 = 0.64.
    x = [0.0, math.log(2.0), -math.log(2.0), 50.0]
    y, dx = run_one(tanh(), blob_from(x), Blob(), [1, 1, 3, 1])
    np.testing.assert_allclose(y, [0.0, 0.6, -0.6, 1.0], atol=1e-6)
    np.testing.assert_allclose(dx, [1.0, 0.64, 1.92, 0.0], atol=1e-6)


@given(bottom=blobs(max_side=4, low=-3.0, high=3.0),
       engine=st.sampled_from(["DEFAULT", "CAFFE"]))
def test_gradient(mode, bottom, engine):
    layer = create_layer(layer_param("TanH", tanh_param={"engine": engine}))
    checker = GradientChecker(1e-2, 1e-3)
    checker.check_gradient_eltwise(layer, [bottom], [Blob()])


@given(bottom=blobs(low=-4.0, high=4.0), seed=st.integers(0, 2**31 - 1))
def test_in_place_matches_out_of_place(mode, bottom, seed):
    x = bottom.cpu_data().copy()
    dy = np.random.default_rng(seed).uniform(-1, 1, x.shape).astype(np.float32)
    y, dx = run_one(tanh(), blob_from(x), Blob(), dy)
    y_in, dx_in = run_one(tanh(), bottom, bottom, dy)  # top is the bottom blob
    np.testing.assert_array_equal(y_in, y)
    np.testing.assert_array_equal(dx_in, dx)


@given(bottom=blobs(low=-10.0, high=10.0))
def test_odd_and_bounded(mode, bottom):
    top, layer = Blob(), tanh()
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    y = top.cpu_data().copy()
    assert np.all(np.abs(y) <= 1)
    minus = blob_from(-bottom.cpu_data())
    layer.forward([minus], [top])
    np.testing.assert_allclose(top.cpu_data(), -y, atol=1e-7)  # tanh(-x) = -tanh(x)


@pytest.mark.opencl
@given(bottom=blobs(low=-6.0, high=6.0), engine=st.sampled_from(["DEFAULT", "CAFFE"]),
       seed=st.integers(0, 2**31 - 1))
def test_engines_agree(bottom, engine, seed):
    # OpenCL's tanh may differ from numpy's by a few ulps: the default tolerance.
    param = layer_param("TanH", tanh_param={"engine": engine})
    compare_engines(param, [bottom.cpu_data()], seed=seed)


@pytest.mark.opencl
@pytest.mark.parametrize("in_place", [False, True])
def test_device_path_makes_no_host_copies(in_place):
    x = np.float32([[-1.0, 2.0], [0.5, -3.0]])
    bottom = blob_from(x)
    top = bottom if in_place else Blob()
    layer = tanh()
    with common.using_mode(common.GPU):
        layer.setup([bottom], [top])
        top.diff = np.ones_like(x)
        top.gpu_diff(), bottom.gpu_data()  # the inputs are on the device ...
        before = dict(SyncedMemory.transfers)
        layer.forward([bottom], [top])
        layer.backward([top], [True], [bottom])
        assert SyncedMemory.transfers == before  # ... and everything stays there
    y = np.tanh(x)
    np.testing.assert_allclose(bottom.cpu_diff(), 1 - y * y, rtol=1e-5)


def test_bad_blob_count(mode):
    layer = create_layer(layer_param("TanH", name="tanh_bad"))
    with pytest.raises(MinicaffeError, match=r"TanH layer 'tanh_bad' takes exactly 1 bottom"):
        layer.setup([], [Blob()])
