"""Concat: known values, shapes along any axis, gradients (Caffe's settings), engines agree,
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


def concat(name="concat", **fields):
    return create_layer(layer_param("Concat", name=name, concat_param=fields))


@pytest.mark.parametrize("fields, expected", [
    ({"axis": 0}, [[1, 2], [3, 4], [5, 6], [7, 8]]),
    ({"concat_dim": 0}, [[1, 2], [3, 4], [5, 6], [7, 8]]),
    ({"axis": 1}, [[1, 2, 5, 6], [3, 4, 7, 8]]),
    ({"axis": -1}, [[1, 2, 5, 6], [3, 4, 7, 8]]),
    ({}, [[1, 2, 5, 6], [3, 4, 7, 8]]),  # axis defaults to 1
])
def test_known_values(mode, fields, expected):
    a, b = blob_from([[1, 2], [3, 4]]), blob_from([[5, 6], [7, 8]])
    top, layer = Blob(), concat(**fields)
    layer.setup([a, b], [top])
    layer.forward([a, b], [top])
    np.testing.assert_array_equal(top.cpu_data(), expected)
    # Backward hands each bottom its own slice of the top diff.
    top.diff = -np.asarray(expected)
    layer.backward([top], [True, True], [a, b])
    np.testing.assert_array_equal(a.cpu_diff(), -a.cpu_data())
    np.testing.assert_array_equal(b.cpu_diff(), -b.cpu_data())


def test_known_values_unequal_sizes(mode):
    # Channels 1 + 2 + 1 of a 1 x C x 2 blob.
    a = blob_from(np.float32([[[1, 2]]]))
    b = blob_from(np.float32([[[3, 4], [5, 6]]]))
    c = blob_from(np.float32([[[7, 8]]]))
    top, layer = Blob(), concat()
    layer.setup([a, b, c], [top])
    layer.forward([a, b, c], [top])
    assert top.shape == (1, 4, 2)
    np.testing.assert_array_equal(top.cpu_data(), [[[1, 2], [3, 4], [5, 6], [7, 8]]])


@st.composite
def concat_cases(draw, max_bottoms=3):
    """Bottoms that agree except along a drawn axis, and the params that name that axis."""
    shape = list(draw(shapes(min_axes=1, max_axes=4, max_side=3)))
    n = len(shape)
    axis = draw(st.integers(0, n - 1))
    bottoms = []
    for _ in range(draw(st.integers(1, max_bottoms))):
        shape[axis] = draw(st.integers(1, 3))
        bottoms.append(draw(blobs(shape=tuple(shape))))
    fields = draw(st.sampled_from([{"axis": axis}, {"axis": axis - n}, {"concat_dim": axis}]))
    if fields == {"axis": 1} and draw(st.booleans()):
        fields = {}  # the default
    return bottoms, fields, axis


@given(case=concat_cases())
def test_slices_of_top_are_the_bottoms(mode, case):
    bottoms, fields, axis = case
    top, layer = Blob(), concat(**fields)
    layer.setup(bottoms, [top])
    layer.forward(bottoms, [top])
    sizes = [b.shape[axis] for b in bottoms]
    assert top.shape[axis] == sum(sizes)
    others = [b.shape[:axis] + b.shape[axis + 1:] for b in [top] + bottoms]
    assert all(o == others[0] for o in others)
    offset = 0
    for blob, size in zip(bottoms, sizes):
        piece = np.take(top.cpu_data(), range(offset, offset + size), axis=axis)
        np.testing.assert_array_equal(piece, blob.cpu_data())
        offset += size


@given(case=concat_cases())
def test_gradient(mode, case):
    bottoms, fields, _ = case
    checker = GradientChecker(1e-2, 1e-2)
    if len(bottoms) == 1:  # Caffe's TestGradientTrivial
        checker.check_gradient_eltwise(concat(**fields), bottoms, [Blob()])
    else:
        checker.check_gradient(concat(**fields), bottoms, [Blob()])


@given(case=concat_cases(), data=st.data())
def test_gradient_one_bottom_only(mode, case, data):
    # As Caffe's TestGradientChannelsBottomOneOnly: propagate to one bottom only.
    bottoms, fields, _ = case
    which = data.draw(st.integers(0, len(bottoms) - 1))
    GradientChecker(1e-2, 1e-2).check_gradient(concat(**fields), bottoms, [Blob()], which)


@pytest.mark.opencl
@given(case=concat_cases(max_bottoms=4), data=st.data())
def test_engines_agree(case, data):
    # Pure copies on both engines: exact agreement, for any subset of bottoms to propagate to.
    bottoms, fields, _ = case
    down = data.draw(st.lists(st.booleans(), min_size=len(bottoms), max_size=len(bottoms)))
    compare_engines(layer_param("Concat", concat_param=fields), [b.cpu_data() for b in bottoms],
                    propagate_down=down, rtol=0, atol=0)


@pytest.mark.opencl
def test_device_path_makes_no_host_copies():
    a, b = blob_from(np.ones((2, 1, 3))), blob_from(np.zeros((2, 2, 3)))
    top, layer = Blob(), concat()
    with common.using_mode(common.GPU):
        layer.setup([a, b], [top])
        top.diff = np.arange(18).reshape(2, 3, 3)
        top.gpu_diff(), a.gpu_data(), b.gpu_data()  # the inputs are on the device ...
        before = dict(SyncedMemory.transfers)
        layer.forward([a, b], [top])
        layer.backward([top], [True, True], [a, b])
        assert SyncedMemory.transfers == before  # ... and everything stays there
    np.testing.assert_array_equal(top.cpu_data()[:, 0], 1)
    np.testing.assert_array_equal(b.cpu_diff(), np.arange(18).reshape(2, 3, 3)[:, 1:])


def test_single_bottom_shares_memory(mode):
    bottom, top, layer = blob_from([1.0, 2.0, 3.0]), Blob(), concat(axis=0)
    layer.setup([bottom], [top])
    bottom.data[1] = 9.0
    assert top.cpu_data()[1] == 9.0
    assert top.data_mem is bottom.data_mem and top.diff_mem is bottom.diff_mem


@pytest.mark.parametrize("shapes_, fields, message", [
    ([(2, 3, 4), (2, 5, 5)], {},
     r"same shape except along axis 1: bottom 0 has shape \(2, 3, 4\), "
     r"bottom 1 has shape \(2, 5, 5\)"),
    ([(2, 3), (2, 3), (3, 3)], {},
     r"bottom 2 has shape \(3, 3\)"),
    ([(2, 3), (2, 3, 1)], {}, r"same number of axes: .* bottom 1 has shape \(2, 3, 1\)"),
    ([(2, 3), (2, 3)], {"axis": 2}, r"axis 2 is out of range for bottom 0 of shape \(2, 3\)"),
    ([(2, 3), (2, 3)], {"axis": -3}, r"axis -3 is out of range"),
    ([(2, 3), (2, 3)], {"concat_dim": 2}, r"concat_dim 2 is out of range"),
    ([(2, 3), (2, 3)], {"axis": 1, "concat_dim": 1}, r"either axis or concat_dim"),
])
def test_bad_input(mode, shapes_, fields, message):
    layer = concat("concat_bad", **fields)
    with pytest.raises(MinicaffeError, match=r"Concat layer 'concat_bad': .*" + message):
        layer.setup([Blob(s) for s in shapes_], [Blob()])
