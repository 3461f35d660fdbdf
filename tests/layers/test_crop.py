"""Crop: known answers from index arithmetic (Caffe's cases), gradients (Caffe's checker:
stepsize 1e-2, threshold 1e-3), the OpenCL twin against numpy, bad input.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.syncedmem import SyncedMemory
from minicaffe.testing import GradientChecker
from minicaffe.testing.engines import compare_engines
from tests.strategies import blob_from, layer_param


def crop(**fields):
    return create_layer(layer_param("Crop", "crop", crop_param=fields))


# ---- known answers: x holds its own flat index, so the top must hold the flat index,
# in x's shape, of (top index + offsets), and backward must put dy back there.
@pytest.mark.parametrize("x_shape, ref_shape, fields, offsets", [
    # Caffe's TestSetupShapeDefault / TestCropHW shapes: axis 2 by default, offset 0.
    ((2, 4, 5, 4), (2, 3, 4, 2), {}, (0, 0, 0, 0)),
    ((2, 4, 5, 4), (2, 3, 4, 2), {"axis": 2, "offset": [1, 2]}, (0, 0, 1, 2)),
    # One offset for every cropped axis.
    ((2, 4, 5, 4), (2, 3, 4, 2), {"offset": [1]}, (0, 0, 1, 1)),
    # TestCropAllOffset: every axis, one offset each.
    ((2, 4, 5, 4), (2, 3, 4, 2), {"axis": 0, "offset": [0, 1, 1, 2]}, (0, 1, 1, 2)),
    # Negative axis: the last only. The reference's other sizes do not matter.
    ((2, 4, 5, 4), (1, 9, 1, 2), {"axis": -1, "offset": [2]}, (0, 0, 0, 2)),
    # TestCrop5D.
    ((2, 4, 5, 4, 2), (2, 3, 4, 2, 1), {"axis": 2, "offset": [1, 2, 0]}, (0, 0, 1, 2, 0)),
])
def test_known_answer(mode, x_shape, ref_shape, fields, offsets):
    x = blob_from(np.arange(np.prod(x_shape)).reshape(x_shape))
    layer, top = crop(**fields), Blob()
    layer.setup([x, Blob(ref_shape)], [top])
    axis = fields.get("axis", 2) % len(x_shape)
    shape = x_shape[:axis] + ref_shape[axis:]
    assert top.shape == shape
    layer.forward([x, Blob(ref_shape)], [top])
    source = np.ravel_multi_index(tuple(j + o for j, o in zip(np.indices(shape), offsets)), x_shape)
    np.testing.assert_array_equal(top.data, source)

    dy = np.random.default_rng(0).uniform(1, 2, shape).astype(np.float32)
    top.diff = dy
    x.diff = 5.0
    layer.backward([top], [True, True], [x, Blob(ref_shape)])
    expected = np.zeros(np.prod(x_shape), np.float32)
    expected[source.ravel()] = dy.ravel()
    np.testing.assert_array_equal(x.diff.ravel(), expected)


def test_reference_gets_no_gradient(mode):
    x, ref, top = blob_from(np.ones((1, 1, 3, 3))), Blob(1, 1, 2, 2), Blob()
    layer = crop()
    layer.setup([x, ref], [top])
    layer.forward([x, ref], [top])
    top.diff = 1.0
    ref.diff = 7.0
    layer.backward([top], [True, True], [x, ref])
    assert np.all(ref.diff == 7.0) and x.diff.sum() == 4


def test_reshape_follows_the_bottoms(mode):
    layer, top = crop(offset=[1]), Blob()
    layer.setup([Blob(1, 1, 4, 4), Blob(1, 1, 2, 2)], [top])
    x = blob_from(np.arange(36).reshape(1, 1, 6, 6))
    layer.forward([x, Blob(1, 1, 3, 2)], [top])
    np.testing.assert_array_equal(top.data[0, 0], [[7, 8], [13, 14], [19, 20]])


# ---- drawn crops
@st.composite
def crop_cases(draw, max_axes=4, max_side=4):
    """(x shape, reference shape, crop_param fields, seed)."""
    x_shape = draw(st.lists(st.integers(1, max_side), min_size=1, max_size=max_axes))
    n = len(x_shape)
    axis = draw(st.integers(-n, n - 1))
    start = axis % n
    ref = [draw(st.integers(1, 3)) if i < start else draw(st.integers(1, x_shape[i]))
           for i in range(n)]
    room = [x_shape[i] - ref[i] for i in range(start, n)]
    kind = draw(st.sampled_from(["none", "one", "each"]))
    fields = {"axis": axis}
    if kind == "one":
        fields["offset"] = [draw(st.integers(0, min(room)))]
    elif kind == "each":
        fields["offset"] = [draw(st.integers(0, r)) for r in room]
    return tuple(x_shape), tuple(ref), fields, draw(st.integers(0, 2**31 - 1))


@given(case=crop_cases())
def test_gradient(mode, case):
    x_shape, ref_shape, fields, seed = case
    x = blob_from(np.random.default_rng(seed).uniform(-1, 1, x_shape))
    GradientChecker(1e-2, 1e-3).check_gradient(crop(**fields), [x, Blob(ref_shape)], [Blob()])


def test_gradient_exhaustive(mode):
    # Caffe's TestCropAllGradient with offsets, on small blobs.
    x = blob_from(np.random.default_rng(1).normal(size=(2, 2, 3, 3)))
    layer = crop(axis=0, offset=[1, 1, 1, 0])
    GradientChecker(1e-2, 1e-3).check_gradient_exhaustive(layer, [x, Blob(1, 1, 2, 2)], [Blob()])


@given(case=crop_cases(max_axes=5))
def test_engines_agree(gpu_only, case):
    x_shape, ref_shape, fields, seed = case
    x = np.random.default_rng(seed).uniform(-1, 1, x_shape)
    compare_engines(layer_param("Crop", "crop", crop_param=fields), [x, np.zeros(ref_shape)],
                    propagate_down=[True, False])


def test_data_stays_on_the_device(gpu_only):
    x = blob_from(np.random.default_rng(0).uniform(-1, 1, (2, 3, 5, 4)))
    ref, top, layer = Blob(2, 3, 3, 2), Blob(), crop(offset=[1, 2])
    layer.setup([x, ref], [top])
    x.mutable_gpu_data()
    top.mutable_gpu_diff()
    before = dict(SyncedMemory.transfers)
    layer.forward([x, ref], [top])
    layer.backward([top], [True, False], [x, ref])
    assert SyncedMemory.transfers == before


# ---- bad input
@pytest.mark.parametrize("fields, x_shape, ref_shape, message", [
    ({"offset": [1, 1, 1]}, (2, 3, 4, 4), (2, 3, 2, 2), "3 offsets given for the 2 axes"),
    ({"offset": [3]}, (2, 3, 4, 4), (2, 3, 2, 2), "crop of axis 2 is out of bounds: offset 3"),
    ({"axis": 1}, (2, 3, 4, 4), (2, 4, 2, 2), "crop of axis 1 is out of bounds"),
    ({"axis": 4}, (2, 3, 4, 4), (2, 3, 2, 2), "axis: axis 4 out of range"),
    ({}, (2, 3, 4, 4), (2, 3, 2), "fewer axes"),
])
def test_bad_input(mode, fields, x_shape, ref_shape, message):
    with pytest.raises(MinicaffeError, match=message) as err:
        crop(**fields).setup([Blob(x_shape), Blob(ref_shape)], [Blob()])
    assert "Crop layer 'crop'" in str(err.value)


def test_bad_blob_counts(mode):
    with pytest.raises(MinicaffeError, match="Crop layer 'crop' takes exactly 2 bottom"):
        crop().setup([Blob(1, 1, 2, 2)], [Blob()])
    x = Blob(1, 1, 2, 2)
    with pytest.raises(MinicaffeError, match="Crop layer 'crop': does not allow in-place"):
        crop().setup([x, Blob(1, 1, 1, 1)], [x])
