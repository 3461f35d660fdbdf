"""BatchReindex: known gather and accumulated gradient, gradients (Caffe's checker settings),
engines agree, index checks. Tests taking `mode` run once per engine (numpy, OpenCL)."""
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
from tests.strategies import blob_from, blobs, layer_param, shapes

X = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]


def reindex(name="reindex"):
    return create_layer(layer_param("BatchReindex", name=name))


def test_known_values(mode):
    # Item 2 twice, item 0 once, item 1 never (2.9 truncates to 2, as Caffe's cast does).
    x, r, top, layer = blob_from(X), blob_from([2, 0, 2.9]), Blob(), reindex()
    layer.setup([x, r], [top])
    layer.forward([x, r], [top])
    np.testing.assert_array_equal(top.cpu_data(), [[5, 6], [1, 2], [5, 6]])
    # Gradients add up over the copies of an item; an item not picked gets 0.
    x.diff = np.full((3, 2), 9.0)
    top.diff = [[1, 2], [10, 20], [100, 200]]
    layer.backward([top], [True, False], [x, r])
    np.testing.assert_array_equal(x.cpu_diff(), [[10, 20], [0, 0], [101, 202]])


@st.composite
def reindex_cases(draw, max_side=3):
    shape = draw(shapes(min_axes=1, max_axes=3, max_side=max_side))
    indices = draw(st.lists(st.integers(0, shape[0] - 1), min_size=1, max_size=4))
    return draw(blobs(shape=shape)), blob_from(indices)


@given(case=reindex_cases())
def test_top_items_are_the_indexed_bottom_items(mode, case):
    x, r = case
    top, layer = Blob(), reindex()
    layer.setup([x, r], [top])
    layer.forward([x, r], [top])
    assert top.shape == (r.count,) + x.shape[1:]
    for m, n in enumerate(r.cpu_data().astype(int)):
        np.testing.assert_array_equal(top.cpu_data()[m], x.cpu_data()[n])


@given(case=reindex_cases(max_side=2))
def test_gradient(mode, case):
    x, r = case
    GradientChecker(1e-4, 1e-2).check_gradient_exhaustive(reindex(), [x, r], [Blob()], check_bottom=0)


@pytest.mark.opencl
@given(case=reindex_cases(max_side=4))
def test_engines_agree(case):
    x, r = case
    compare_engines(layer_param("BatchReindex"), [x.cpu_data(), r.cpu_data()],
                    propagate_down=[True, False])


@pytest.mark.opencl
def test_device_path_makes_no_host_copies():
    # The indices are read on the host for their check: like labels from a Data layer they
    # are on both sides, so that costs no copy.
    x, r, top, layer = blob_from(X), blob_from([1, 1]), Blob(), reindex()
    with common.using_mode(common.GPU):
        layer.setup([x, r], [top])
        top.diff = [[1, 2], [3, 4]]
        top.gpu_diff(), x.mutable_gpu_data(), r.gpu_data()
        before = dict(SyncedMemory.transfers)
        layer.forward([x, r], [top])
        layer.backward([top], [True, False], [x, r])
        assert SyncedMemory.transfers == before
    np.testing.assert_array_equal(x.cpu_diff(), [[0, 0], [4, 6], [0, 0]])


@pytest.mark.parametrize("index", [3, -1, -0.5, float("nan")])
def test_index_outside_the_batch(mode, index):
    x, r, top, layer = blob_from(X), blob_from([0, index]), Blob(), reindex("re_bad")
    layer.setup([x, r], [top])
    with pytest.raises(MinicaffeError, match=r"BatchReindex layer 're_bad': index .* at position 1 "
                                             r".* outside the batch of 3 items"):
        layer.forward([x, r], [top])


def test_indices_must_be_1d(mode):
    with pytest.raises(MinicaffeError, match=r"BatchReindex layer 're_bad': the indices .* must be "
                                             r"a 1-D blob, got shape \(2, 1\)"):
        reindex("re_bad").setup([blob_from(X), blob_from([[0], [1]])], [Blob()])


def test_no_gradient_for_the_indices(mode):
    x, r, top, layer = blob_from(X), blob_from([0]), Blob(), reindex("re_bad")
    layer.setup([x, r], [top])
    layer.forward([x, r], [top])
    with pytest.raises(MinicaffeError, match=r"BatchReindex layer 're_bad': cannot backpropagate "
                                             r"to the indices"):
        layer.backward([top], [True, True], [x, r])


def test_bad_blob_count(mode):
    with pytest.raises(MinicaffeError, match=r"BatchReindex layer 're_bad' takes exactly 2 bottom"):
        reindex("re_bad").setup([blob_from(X)], [Blob()])
