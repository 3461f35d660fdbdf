"""AbsVal: known values, gradients (Caffe's checker settings), the in-place refusal, engines
agree, bad input. Tests taking `mode` run once per engine (numpy, OpenCL)."""
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


def absval(name=None):
    return create_layer(layer_param("AbsVal", name=name))


def test_known_values(mode):
    # |x| by hand; the gradient is dy times the sign of x, and sign(0) = 0 (Caffe's choice
    # at the kink: the zero input passes no gradient). Caffe's sign, (x > 0) - (x < 0), is
    # 0 for NaN as well.
    x = [-2.0, -0.5, 0.0, 1.5, np.nan]
    y, dx = run_one(absval(), blob_from(x), Blob(), [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(y, [2.0, 0.5, 0.0, 1.5, np.nan])
    np.testing.assert_array_equal(dx, [-1.0, -2.0, 0.0, 4.0, 0.0])


@given(bottom=blobs(max_side=4))
def test_gradient(mode, bottom):
    # Caffe's TestAbsGradient: stepsize 1e-2, threshold 1e-3, kink at 0 +- 0.01.
    checker = GradientChecker(1e-2, 1e-3, 1701, 0.0, 0.01)
    checker.check_gradient_eltwise(absval(), [bottom], [Blob()])


@given(bottom=blobs(low=-5.0, high=5.0))
def test_even_and_nonnegative(mode, bottom):
    layer, top = absval(), Blob()
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    y = top.cpu_data().copy()
    assert np.all(y >= 0)
    layer.forward([blob_from(-bottom.cpu_data())], [top])
    np.testing.assert_array_equal(top.cpu_data(), y)  # |-x| = |x|, exactly


@pytest.mark.opencl
@given(bottom=blobs(low=-4.0, high=4.0), seed=st.integers(0, 2**31 - 1))
def test_engines_agree(bottom, seed):
    # Both are exact: a sign flip forward, a product with -1, 0 or 1 backward.
    compare_engines(layer_param("AbsVal"), [bottom.cpu_data()], seed=seed, rtol=0, atol=0)


@pytest.mark.opencl
def test_device_path_makes_no_host_copies():
    bottom, top, layer = blob_from([[-1.0, 2.0], [0.0, -3.0]]), Blob(), absval()
    with common.using_mode(common.GPU):
        layer.setup([bottom], [top])
        top.diff = [[1, 2], [3, 4]]
        top.gpu_diff(), bottom.gpu_data()  # the inputs are on the device ...
        before = dict(SyncedMemory.transfers)
        layer.forward([bottom], [top])
        layer.backward([top], [True], [bottom])
        assert SyncedMemory.transfers == before  # ... and everything stays there
    np.testing.assert_array_equal(top.cpu_data(), [[1, 2], [0, 3]])
    np.testing.assert_array_equal(bottom.cpu_diff(), [[-1, 2], [0, -4]])


def test_in_place_is_refused(mode):
    # As in Caffe: |x| overwrites the sign that backward needs.
    bottom = blob_from([1.0, -1.0])
    with pytest.raises(MinicaffeError, match=r"AbsVal layer 'abs_bad': cannot run in place"):
        absval("abs_bad").setup([bottom], [bottom])


def test_bad_blob_count(mode):
    with pytest.raises(MinicaffeError, match=r"AbsVal layer 'abs_bad' takes exactly 1 bottom"):
        absval("abs_bad").setup([Blob(2), Blob(2)], [Blob()])
