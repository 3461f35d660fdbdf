"""Tile: known values, gradients (Caffe's checker settings), engines agree, bad input.
Tests taking `mode` run once per engine (numpy, OpenCL)."""
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


def tile(name="tile", **fields):
    return create_layer(layer_param("Tile", name=name, tile_param=fields))


@pytest.mark.parametrize("fields, expected", [
    ({"axis": 1, "tiles": 2}, [[1, 2, 1, 2], [3, 4, 3, 4]]),
    ({"tiles": 2}, [[1, 2, 1, 2], [3, 4, 3, 4]]),  # axis defaults to 1
    ({"axis": -1, "tiles": 3}, [[1, 2, 1, 2, 1, 2], [3, 4, 3, 4, 3, 4]]),
    ({"axis": 0, "tiles": 2}, [[1, 2], [3, 4], [1, 2], [3, 4]]),  # the whole blob, twice
    ({"axis": 0, "tiles": 1}, [[1, 2], [3, 4]]),
])
def test_known_values(mode, fields, expected):
    x, top, layer = blob_from([[1, 2], [3, 4]]), Blob(), tile(**fields)
    layer.setup([x], [top])
    layer.forward([x], [top])
    np.testing.assert_array_equal(top.cpu_data(), expected)
    # Backward: every bottom value collects the diffs of all its copies. With the top
    # diff 10^(copy number), each sum shows which copies reached it.
    # The top viewed as (outer, copy, block): outer 1 for axis 0, else one per row.
    tiles = fields["tiles"]
    outer, block = (1, 4) if fields.get("axis") == 0 else (2, 2)
    top.diff = np.broadcast_to((10.0 ** np.arange(tiles))[None, :, None],
                               (outer, tiles, block)).reshape(top.shape)
    layer.backward([top], [True], [x])
    np.testing.assert_array_equal(x.cpu_diff(), np.full((2, 2), sum(10.0 ** np.arange(tiles))))


def test_three_axes_middle(mode):
    # x (2, 2, 1): tiling axis 1 twice repeats each item's 2-value block.
    x, top, layer = blob_from([[[1], [2]], [[3], [4]]]), Blob(), tile(axis=1, tiles=2)
    layer.setup([x], [top])
    layer.forward([x], [top])
    assert top.shape == (2, 4, 1)
    np.testing.assert_array_equal(top.cpu_data()[..., 0], [[1, 2, 1, 2], [3, 4, 3, 4]])


@st.composite
def tile_cases(draw, max_side=3):
    bottom = draw(blobs(max_axes=3, max_side=max_side))
    axis = draw(st.integers(-bottom.num_axes, bottom.num_axes - 1))
    return bottom, {"axis": axis, "tiles": draw(st.integers(1, 3))}


@given(case=tile_cases())
def test_matches_numpy_tile(mode, case):
    bottom, fields = case
    top, layer = Blob(), tile(**fields)
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    reps = [1] * bottom.num_axes
    reps[fields["axis"]] = fields["tiles"]
    np.testing.assert_array_equal(top.cpu_data(), np.tile(bottom.cpu_data(), reps))


@given(case=tile_cases(max_side=2))  # exhaustive: keep the blobs small
def test_gradient(mode, case):
    bottom, fields = case
    GradientChecker(1e-2, 1e-2).check_gradient_exhaustive(tile(**fields), [bottom], [Blob()])


@pytest.mark.opencl
@given(case=tile_cases())
def test_engines_agree(case):
    bottom, fields = case
    compare_engines(layer_param("Tile", tile_param=fields), [bottom.cpu_data()])


@pytest.mark.opencl
def test_device_path_makes_no_host_copies():
    x, top, layer = blob_from([[1, 2], [3, 4]]), Blob(), tile(tiles=3)
    with common.using_mode(common.GPU):
        layer.setup([x], [top])
        top.diff = np.ones((2, 6))
        top.gpu_diff(), x.gpu_data()
        before = dict(SyncedMemory.transfers)
        layer.forward([x], [top])
        layer.backward([top], [True], [x])
        assert SyncedMemory.transfers == before
    np.testing.assert_array_equal(x.cpu_diff(), np.full((2, 2), 3))


@pytest.mark.parametrize("fields, message", [
    ({"axis": 1}, r"tile_param.tiles .* must be given"),
    ({"tiles": 0}, r"tile_param.tiles must be positive, got 0"),
    ({"tiles": -2}, r"tile_param.tiles must be positive, got -2"),
    ({"axis": 2, "tiles": 2}, r"axis 2 is out of range for bottom .* of shape \(2, 3\)"),
    ({"axis": -3, "tiles": 2}, r"axis -3 is out of range"),
])
def test_bad_input(mode, fields, message):
    with pytest.raises(MinicaffeError, match=r"Tile layer 'tile_bad': " + message):
        tile("tile_bad", **fields).setup([Blob(2, 3)], [Blob()])


def test_bad_blob_count(mode):
    with pytest.raises(MinicaffeError, match=r"Tile layer 'tile_bad' takes exactly 1 bottom"):
        tile("tile_bad", tiles=2).setup([Blob(2), Blob(2)], [Blob()])
