"""Slice: known values, shapes along any axis, gradients (Caffe's settings), engines agree,
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
from tests.strategies import blob_from, blobs, layer_param, shapes

X = np.arange(12, dtype=np.float32).reshape(2, 6)  # rows 0..5 and 6..11


def slice_layer(name="slice", **fields):
    return create_layer(layer_param("Slice", name=name, slice_param=fields))


@pytest.mark.parametrize("fields, tops, expected", [
    ({"slice_point": [1, 4]}, 3, [X[:, :1], X[:, 1:4], X[:, 4:]]),
    ({"axis": -1, "slice_point": [5]}, 2, [X[:, :5], X[:, 5:]]),
    ({}, 3, [X[:, 0:2], X[:, 2:4], X[:, 4:6]]),  # equal pieces along axis 1 (the default)
    ({"axis": 0}, 2, [X[:1], X[1:]]),
    ({"slice_dim": 0}, 2, [X[:1], X[1:]]),  # the deprecated name of axis
    ({"slice_point": [2, 6]}, 3, [X[:, :2], X[:, 2:], X[:, 6:]]),  # an empty last top, as Caffe
])
def test_known_values(mode, fields, tops, expected):
    x, top, layer = blob_from(X), [Blob() for _ in range(tops)], slice_layer(**fields)
    layer.setup([x], top)
    layer.forward([x], top)
    for blob, piece in zip(top, expected):
        assert blob.shape == piece.shape
        np.testing.assert_array_equal(blob.cpu_data(), piece)
    # Backward puts each top diff back where its piece came from: here -x.
    for blob, piece in zip(top, expected):
        blob.diff = -piece
    layer.backward(top, [True], [x])
    np.testing.assert_array_equal(x.cpu_diff(), -X)


def test_single_top_shares_memory(mode):
    x, top, layer = blob_from(X), Blob(), slice_layer()
    layer.setup([x], [top])
    assert top.data_mem is x.data_mem and top.diff_mem is x.diff_mem


@st.composite
def slice_cases(draw, max_tops=3, max_axes=4, max_side=3):
    """A bottom, an axis, cut points (or equal pieces), and the params naming them."""
    shape = list(draw(shapes(min_axes=1, max_axes=max_axes, max_side=max_side)))
    n = len(shape)
    axis = draw(st.integers(0, n - 1))
    tops = draw(st.integers(1, max_tops))
    if draw(st.booleans()):  # equal pieces
        shape[axis] = tops * draw(st.integers(1, 2))
        fields = {}
    else:
        shape[axis] = draw(st.integers(tops, tops + 2))
        points = [] if tops == 1 else sorted(draw(st.sets(
            st.integers(1, shape[axis] - 1), min_size=tops - 1, max_size=tops - 1)))
        fields = {"slice_point": points} if points else {}
        tops = len(points) + 1
    fields.update(draw(st.sampled_from([{"axis": axis}, {"axis": axis - n}, {"slice_dim": axis}])))
    return draw(blobs(shape=tuple(shape))), fields, tops, axis


@given(case=slice_cases())
def test_tops_concatenate_to_the_bottom(mode, case):
    bottom, fields, tops, axis = case
    top, layer = [Blob() for _ in range(tops)], slice_layer(**fields)
    layer.setup([bottom], top)
    layer.forward([bottom], top)
    joined = np.concatenate([t.cpu_data() for t in top], axis=axis)
    np.testing.assert_array_equal(joined, bottom.cpu_data())


@given(case=slice_cases(max_axes=3, max_side=2))  # exhaustive: keep the blobs small
def test_gradient(mode, case):
    bottom, fields, tops, _ = case
    checker = GradientChecker(1e-2, 1e-3)
    if tops == 1:  # Caffe's TestGradientTrivial
        checker.check_gradient_eltwise(slice_layer(**fields), [bottom], [Blob()])
    else:
        checker.check_gradient_exhaustive(slice_layer(**fields), [bottom],
                                          [Blob() for _ in range(tops)])


@pytest.mark.opencl
@given(case=slice_cases(max_tops=4))
def test_engines_agree(case):
    bottom, fields, tops, _ = case
    compare_engines(layer_param("Slice", slice_param=fields), [bottom.cpu_data()], tops,
                    rtol=0, atol=0)  # pure copies


@pytest.mark.opencl
def test_device_path_makes_no_host_copies():
    x, top, layer = blob_from(X), [Blob(), Blob()], slice_layer(slice_point=[2])
    with common.using_mode(common.GPU):
        layer.setup([x], top)
        top[0].diff, top[1].diff = X[:, :2] + 1, X[:, 2:] + 1
        top[0].gpu_diff(), top[1].gpu_diff(), x.gpu_data()
        before = dict(SyncedMemory.transfers)
        layer.forward([x], top)
        layer.backward(top, [True], [x])
        assert SyncedMemory.transfers == before
    np.testing.assert_array_equal(x.cpu_diff(), X + 1)


@pytest.mark.parametrize("fields, tops, message", [
    ({"axis": 1, "slice_dim": 1}, 2, r"either axis or slice_dim"),
    ({"slice_point": [2]}, 3, r"1 slice_point value\(s\) for 3 tops"),
    ({"slice_point": [3, 3]}, 3, r"slice_point \[3, 3\] must increase strictly"),
    ({"slice_point": [0]}, 2, r"slice_point \[0\] must increase strictly from above 0"),
    ({"slice_point": [7]}, 2, r"at most 6, the size of axis 1"),
    ({}, 4, r"4 tops do not evenly divide axis 1 of size 6"),
    ({"slice_point": [1, 2, 3, 4, 5, 6]}, 7, r"7 tops but axis 1 .* has only 6 entries"),
    ({"axis": 2}, 2, r"axis 2 is out of range for bottom .* of shape \(2, 6\)"),
    ({"axis": -3}, 2, r"axis -3 is out of range"),
    ({"slice_dim": 2}, 2, r"slice_dim 2 is out of range"),
])
def test_bad_input(mode, fields, tops, message):
    with pytest.raises(MinicaffeError, match=r"Slice layer 'slice_bad': .*" + message):
        slice_layer("slice_bad", **fields).setup([blob_from(X)], [Blob() for _ in range(tops)])


def test_bad_blob_count(mode):
    with pytest.raises(MinicaffeError, match=r"Slice layer 'slice_bad' takes at least 1 top"):
        slice_layer("slice_bad").setup([blob_from(X)], [])
