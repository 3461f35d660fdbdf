"""Split: tops share the bottom's data, backward sums the top diffs; gradients, engines agree,
errors. Tests taking `mode` run once per engine (numpy, OpenCL)."""
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
from tests.strategies import blob_from, blobs, layer_param


def split(name="split"):
    return create_layer(layer_param("Split", name=name))


def test_known_values(mode):
    bottom, tops, layer = blob_from([[1, 2], [3, 4]]), [Blob(), Blob()], split()
    layer.setup([bottom], tops)
    layer.forward([bottom], tops)
    for top in tops:
        np.testing.assert_array_equal(top.cpu_data(), [[1, 2], [3, 4]])
    tops[0].diff = [[1, 0], [2, 0]]
    tops[1].diff = [[10, 20], [30, 40]]
    layer.backward(tops, [True], [bottom])
    np.testing.assert_array_equal(bottom.cpu_diff(), [[11, 20], [32, 40]])


@pytest.mark.parametrize("num_tops", [1, 2, 3])
def test_known_sums_in_top_order(mode, num_tops):
    # One top is copied, two are one add, more add on in order: ((1e8 + -1e8) + 1) is 1,
    # where 1e8 + (-1e8 + 1) would round to 0 in float32.
    bottom, tops, layer = blob_from([0.0]), [Blob() for _ in range(num_tops)], split()
    layer.setup([bottom], tops)
    for top, dy in zip(tops, [1e8, -1e8, 1.0]):
        top.diff = [dy]
    bottom.diff = [5.0]   # overwritten, not added to
    layer.backward(tops, [True], [bottom])
    np.testing.assert_array_equal(bottom.diff, [{1: 1e8, 2: 0.0, 3: 1.0}[num_tops]])


@given(bottom=blobs(max_side=4), num_tops=st.integers(1, 4))
def test_gradient(mode, bottom, num_tops):
    tops = [Blob() for _ in range(num_tops)]
    GradientChecker(1e-2, 1e-2).check_gradient_eltwise(split(), [bottom], tops)


@given(bottom=blobs(), num_tops=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_backward_sums_top_diffs(mode, bottom, num_tops, seed):
    tops, layer = [Blob() for _ in range(num_tops)], split()
    layer.setup([bottom], tops)
    layer.forward([bottom], tops)
    draws = np.random.default_rng(seed).uniform(-1, 1, (num_tops,) + bottom.shape)
    for top, dy in zip(tops, draws.astype(np.float32)):
        top.diff = dy
    layer.backward(tops, [True], [bottom])
    np.testing.assert_allclose(bottom.cpu_diff(), draws.astype(np.float32).sum(0), rtol=1e-5,
                               atol=1e-6)


@given(bottom=blobs(), num_tops=st.integers(1, 4), value=st.floats(-10, 10, width=32))
def test_tops_share_data_not_diff(mode, bottom, num_tops, value):
    tops, layer = [Blob() for _ in range(num_tops)], split()
    layer.setup([bottom], tops)
    layer.forward([bottom], tops)
    bottom.mutable_cpu_data().reshape(-1)[0] = value  # written after forward ...
    for top in tops:
        assert top.shape == bottom.shape
        assert top.cpu_data().reshape(-1)[0] == value  # ... and seen in every top: no copy
    # Each top keeps its own diff, else the consumers would overwrite each other's gradient.
    diffs = {id(top.diff_mem) for top in tops} | {id(bottom.diff_mem)}
    assert len(diffs) == num_tops + 1


def test_propagate_down_false_leaves_bottom_diff(mode):
    bottom, tops, layer = blob_from([1.0, 2.0]), [Blob(), Blob()], split()
    layer.setup([bottom], tops)
    bottom.diff = [7, 8]
    tops[0].diff, tops[1].diff = [1, 1], [1, 1]
    layer.backward(tops, [False], [bottom])
    np.testing.assert_array_equal(bottom.cpu_diff(), [7, 8])


@pytest.mark.opencl
@given(bottom=blobs(), num_tops=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_engines_agree(bottom, num_tops, seed):
    # The device adds the top diffs in the same order as numpy: exact agreement.
    compare_engines(layer_param("Split"), [bottom.cpu_data()], num_tops, seed=seed,
                    rtol=0, atol=0)


@pytest.mark.opencl
def test_device_path_makes_no_host_copies():
    bottom, tops, layer = blob_from([1.0, 2.0, 3.0]), [Blob(), Blob(), Blob()], split()
    with common.using_mode(common.GPU):
        layer.setup([bottom], tops)
        for k, top in enumerate(tops):
            top.diff = [k, 10 * k, 100 * k]
            top.gpu_diff()  # the top diffs are on the device ...
        bottom.gpu_data()
        before = dict(SyncedMemory.transfers)
        layer.forward([bottom], tops)
        layer.backward(tops, [True], [bottom])
        assert SyncedMemory.transfers == before  # ... and everything stays there
    np.testing.assert_array_equal(bottom.cpu_diff(), [3, 30, 300])


def test_in_place_refused(mode):
    blob = Blob(2, 3)
    with pytest.raises(MinicaffeError,
                       match=r"Split layer 'split_bad' does not allow in-place.*top 1"):
        split("split_bad").setup([blob], [Blob(), blob])


def test_needs_a_top(mode):
    with pytest.raises(MinicaffeError, match=r"Split layer 'split_bad' takes at least 1 top"):
        split("split_bad").setup([Blob(2)], [])
