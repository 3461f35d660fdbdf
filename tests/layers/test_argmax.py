"""ArgMax: known picks with ties, top shapes (Caffe's setup tests), every layout against a
plain-Python ranking, engines agree, no backward, bad input. Tests taking `mode` run once
per engine (numpy, OpenCL)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicaffe import common
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.syncedmem import SyncedMemory
from minicaffe.testing.engines import compare_engines
from tests.strategies import blob_from, layer_param, shapes


def argmax(name="argmax", **fields):
    return create_layer(layer_param("ArgMax", name=name, argmax_param=fields))


def forward(layer, x):
    bottom, top = blob_from(x), Blob()
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    return top


# Two items of four values; item 0 has a tie for first place (3 at 1 and 2), item 1 a tie
# for second (5 at 0 and 3). Ties rank the larger index first, as Caffe's sort of
# (value, index) pairs in descending order does.
X = [[1.0, 3.0, 3.0, 0.0], [5.0, 2.0, 7.0, 5.0]]


@pytest.mark.parametrize("fields, shape, expected", [
    ({}, (2, 1, 1), [2, 2]),
    ({"top_k": 3}, (2, 1, 3), [[2, 1, 0], [2, 3, 0]]),
    ({"top_k": 2, "out_max_val": True}, (2, 2, 2), [[[2, 1], [3, 3]], [[2, 3], [7, 5]]]),
    ({"axis": 1, "top_k": 2}, (2, 2), [[2, 1], [2, 3]]),
    ({"axis": -1, "top_k": 2, "out_max_val": True}, (2, 2), [[3, 3], [7, 5]]),  # values only
    ({"axis": 0}, (1, 4), [[1, 0, 1, 1]]),  # per column; 5 beats 0 at column 3
])
def test_known_values(mode, fields, shape, expected):
    top = forward(argmax(**fields), X)
    assert top.shape == shape
    np.testing.assert_array_equal(top.cpu_data().reshape(np.shape(expected)), expected)


@pytest.mark.parametrize("fields, shape", [
    ({}, (2, 1, 1, 1)),                      # Caffe's TestSetup: (N, 1, top_k, 1)
    ({"out_max_val": True}, (2, 2, 1, 1)),   # TestSetupMaxVal
    ({"axis": 0}, (1, 3, 4, 5)),             # TestSetupAxis
    ({"axis": -2}, (2, 3, 1, 5)),            # TestSetupAxisNegativeIndexing
    ({"axis": 2, "out_max_val": True}, (2, 3, 1, 5)),  # TestSetupAxisMaxVal
    ({"top_k": 7}, (2, 1, 7, 1)),
])
def test_top_shapes(mode, fields, shape):
    assert forward(argmax(**fields), np.zeros((2, 3, 4, 5))).shape == shape


def test_one_axis_bottom_pads_the_top_to_three_axes(mode):
    top = forward(argmax(), [4.0, 1.0])  # two items of one value each
    assert top.shape == (2, 1, 1)
    np.testing.assert_array_equal(top.cpu_data(), 0)


def ranking(values, k):
    """Indices of the k largest (value, index) pairs, largest first: plain Python."""
    pairs = sorted(((float(v), i) for i, v in enumerate(values)), reverse=True)
    return [i for _, i in pairs[:k]]


@st.composite
def argmax_cases(draw):
    shape = draw(shapes(min_axes=1, max_axes=4, max_side=4))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    x = rng.integers(-2, 3, shape).astype(np.float32)  # few distinct values: many ties
    fields = {"out_max_val": draw(st.booleans())}
    if draw(st.booleans()):
        axis = draw(st.integers(-len(shape), len(shape) - 1))
        fields["axis"], dim = axis, shape[axis]
    else:
        dim = int(np.prod(shape[1:]))
    fields["top_k"] = draw(st.integers(1, dim))
    return x, fields


@given(case=argmax_cases())
def test_matches_a_plain_ranking(mode, case):
    x, fields = case
    top, k = forward(argmax(**fields), x).cpu_data(), fields["top_k"]
    if "axis" in fields:
        moved = np.moveaxis(x, fields["axis"], -1)
        picks = np.apply_along_axis(ranking, -1, moved, k)  # indices along the last axis
        if fields["out_max_val"]:
            picks = np.take_along_axis(moved, picks, axis=-1)
        np.testing.assert_array_equal(top, np.moveaxis(picks, -1, fields["axis"]))
    else:
        for n, item in enumerate(x.reshape(x.shape[0], -1)):
            picks = ranking(item, k)
            rows = top[n].reshape(-1, k)
            np.testing.assert_array_equal(rows[0], picks)
            if fields["out_max_val"]:
                np.testing.assert_array_equal(rows[1], item[picks])


@pytest.mark.opencl
@given(case=argmax_cases())
def test_engines_agree(case):
    x, fields = case
    compare_engines(layer_param("ArgMax", argmax_param=fields), [x], backward=False, rtol=0, atol=0)


@pytest.mark.opencl
def test_device_path_makes_no_host_copies():
    bottom, top, layer = blob_from(X), Blob(), argmax(top_k=2)
    with common.using_mode(common.GPU):
        layer.setup([bottom], [top])
        bottom.mutable_gpu_data()
        before = dict(SyncedMemory.transfers)
        layer.forward([bottom], [top])
        assert SyncedMemory.transfers == before
    np.testing.assert_array_equal(top.cpu_data().reshape(2, 2), [[2, 1], [2, 3]])


def test_no_backward(mode):
    # Caffe's backward is NOT_IMPLEMENTED: any call fails, whatever propagate_down says.
    layer, bottom, top = argmax("am_bad"), blob_from(X), Blob()
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    for down in ([True], [False]):
        with pytest.raises(MinicaffeError, match=r"ArgMax layer 'am_bad': has no backward"):
            layer.backward([top], down, [bottom])


@pytest.mark.parametrize("fields, message", [
    ({"top_k": 0}, r"top_k must be at least 1"),
    ({"top_k": 5}, r"top_k 5 is more than the number of values per item \(4\)"),
    ({"axis": 0, "top_k": 3}, r"top_k 3 is more than the size of axis 0 \(2\)"),
    ({"axis": 2}, r"axis 2 is out of range for bottom .* of shape \(2, 4\)"),
    ({"axis": -3}, r"axis -3 is out of range"),
])
def test_bad_input(mode, fields, message):
    with pytest.raises(MinicaffeError, match=r"ArgMax layer 'am_bad': " + message):
        argmax("am_bad", **fields).setup([blob_from(X)], [Blob()])


def test_bad_blob_count(mode):
    with pytest.raises(MinicaffeError, match=r"ArgMax layer 'am_bad' takes exactly 1 bottom"):
        argmax("am_bad").setup([], [Blob()])
