"""Filter: known selection and gradient, a selection of no items, sizing at setup,
gradients (Caffe's checker settings), engines agree, bad input. Tests taking `mode` run
once per engine (numpy, OpenCL)."""
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

DATA = np.arange(8, dtype=np.float32).reshape(4, 2)  # items (0, 1), (2, 3), (4, 5), (6, 7)
LABELS = [10.0, 11.0, 12.0, 13.0]


def filter_layer(name="filter"):
    return create_layer(layer_param("Filter", name=name))


def run(selector, propagate_down=(True, True, False)):
    bottom = [blob_from(DATA), blob_from(LABELS), blob_from(selector)]
    top, layer = [Blob(), Blob()], filter_layer()
    layer.setup(bottom, top)
    assert top[0].shape == (4, 2)  # setup sizes for the whole batch, as Caffe does
    layer.forward(bottom, top)
    return layer, bottom, top


def test_known_values(mode):
    # Caffe's test: selector 0 1 1 0 keeps items 1 and 2, in order.
    layer, bottom, top = run([0, 1, 1, 0])
    np.testing.assert_array_equal(top[0].cpu_data(), [[2, 3], [4, 5]])
    np.testing.assert_array_equal(top[1].cpu_data(), [11, 12])
    # Backward: each kept item gets its top diff back, the others 0.
    bottom[0].diff = np.full((4, 2), 9.0)
    top[0].diff = [[1, 2], [3, 4]]
    layer.backward(top, [True, False, False], bottom)
    np.testing.assert_array_equal(bottom[0].cpu_diff(), [[0, 0], [1, 2], [3, 4], [0, 0]])


def test_any_nonzero_value_selects(mode):
    # -2, 0.5 and NaN are all nonzero; a (N, 1, 1) selector works like an (N) one.
    _, _, top = run(np.array([-2.0, 0.0, 0.5, np.nan]).reshape(4, 1, 1))
    np.testing.assert_array_equal(top[1].cpu_data(), [10, 12, 13])


def test_nothing_selected(mode):
    layer, bottom, top = run([0, 0, 0, 0])
    assert top[0].shape == (0, 2) and top[1].shape == (0,)
    bottom[0].diff = np.full((4, 2), 9.0)
    layer.backward(top, [True, True, False], bottom)
    np.testing.assert_array_equal(bottom[0].cpu_diff(), 0)
    np.testing.assert_array_equal(bottom[1].cpu_diff(), 0)


@st.composite
def filter_cases(draw, max_side=3):
    items = draw(st.integers(1, 4))
    bottoms = [draw(blobs(shape=(items,) + draw(shapes(min_axes=0, max_axes=2, max_side=max_side))))
               for _ in range(draw(st.integers(1, 2)))]
    selector = draw(st.lists(st.sampled_from([0.0, 1.0, -3.0]), min_size=items, max_size=items))
    return bottoms, blob_from(selector)


@given(case=filter_cases())
def test_tops_hold_the_selected_items(mode, case):
    bottoms, selector = case
    top, layer = [Blob() for _ in bottoms], filter_layer()
    layer.setup(bottoms + [selector], top)
    layer.forward(bottoms + [selector], top)
    kept = [n for n, s in enumerate(selector.cpu_data()) if s != 0]
    for x, y in zip(bottoms, top):
        np.testing.assert_array_equal(y.cpu_data(), x.cpu_data()[kept].reshape(y.shape))


@given(case=filter_cases(max_side=2))
def test_gradient(mode, case):
    # check_gradient_exhaustive, but over the tops as forward sizes them: setup sizes them
    # for the whole batch, and the checker would then walk past the selected items.
    bottoms, selector = case
    layer, bottom, top = filter_layer(), bottoms + [selector], [Blob() for _ in bottoms]
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    checker = GradientChecker(1e-2, 1e-3)
    for i, blob in enumerate(top):
        for j in range(blob.count):
            checker.check_gradient_single(layer, bottom, top, 0, i, j)


@pytest.mark.opencl
@given(case=filter_cases(max_side=4))
def test_engines_agree(case):
    bottoms, selector = case
    compare_engines(layer_param("Filter"), [b.cpu_data() for b in bottoms + [selector]],
                    len(bottoms), propagate_down=[True] * len(bottoms) + [False], rtol=0, atol=0)


@pytest.mark.opencl
def test_device_path_makes_no_host_copies():
    # The selector is read on the host to size the tops (as in Caffe): like a label from a
    # Data layer it is on both sides, so that costs no copy.
    bottom = [blob_from(DATA), blob_from([0, 1, 0, 1])]
    top, layer = [Blob()], filter_layer()
    with common.using_mode(common.GPU):
        layer.setup(bottom, top)
        layer.reshape(bottom, top)
        top[0].diff = [[1, 1], [2, 2]]
        top[0].gpu_diff(), bottom[0].mutable_gpu_data(), bottom[1].gpu_data()
        before = dict(SyncedMemory.transfers)
        layer.forward(bottom, top)
        layer.backward(top, [True, False], bottom)
        assert SyncedMemory.transfers == before
    np.testing.assert_array_equal(top[0].cpu_data(), [[2, 3], [6, 7]])
    np.testing.assert_array_equal(bottom[0].cpu_diff(), [[0, 0], [1, 1], [0, 0], [2, 2]])


@pytest.mark.parametrize("shapes_, tops, message", [
    ([(4, 2), (4,)], 2, r"needs one top per bottom to filter: 1 bottom\(s\) before the selector, 2"),
    ([(4, 2), (4, 2)], 1, r"the selector .* must have one value per item.* got \(4, 2\)"),
    ([(3, 2), (4,)], 1, r"bottom 0 .* of shape \(3, 2\) must have the selector's 4 items"),
    ([(4, 2), (5, 1), (4, 1)], 2, r"bottom 1 .* of shape \(5, 1\) must have the selector's 4"),
])
def test_bad_input(mode, shapes_, tops, message):
    with pytest.raises(MinicaffeError, match=r"Filter layer 'filter_bad': " + message):
        filter_layer_named = create_layer(layer_param("Filter", name="filter_bad"))
        filter_layer_named.setup([Blob(s) for s in shapes_], [Blob() for _ in range(tops)])


def test_no_gradient_for_the_selector(mode):
    bottom, top = [blob_from(DATA), blob_from([1, 0, 0, 1])], [Blob()]
    layer = create_layer(layer_param("Filter", name="filter_bad"))
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    with pytest.raises(MinicaffeError, match=r"Filter layer 'filter_bad': cannot backpropagate "
                                             r"to the selector"):
        layer.backward(top, [True, True], bottom)


def test_bad_blob_count(mode):
    with pytest.raises(MinicaffeError, match=r"Filter layer 'filter_bad' takes at least 2 bottom"):
        create_layer(layer_param("Filter", name="filter_bad")).setup([Blob(2)], [Blob()])
