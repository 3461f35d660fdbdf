"""Bias: hand-computed sums along an axis, the bias as a parameter or a second bottom,
gradients (Caffe's checker: stepsize 1e-2, threshold 1e-3, exhaustive), in-place use,
accumulation, the OpenCL twin against numpy, bad input."""
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
from tests.strategies import blob_from, layer_param


def bias(**fields):
    return create_layer(layer_param("Bias", bias_param=fields))


def test_known_answer_learned_bias(mode):
    # x of shape (2, 3, 2), bias over the channels b = (10, 20, 30): y = x + b[c];
    # db[c] sums dy over n and the last axis; dx = dy.
    x = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    layer, bottom, top = bias(), blob_from(x), Blob()
    layer.setup([bottom], [top])
    assert layer.blobs[0].shape == (3,) and not layer.blobs[0].data.any()  # filler: constant 0
    layer.blobs[0].data = [10, 20, 30]
    layer.forward([bottom], [top])
    np.testing.assert_array_equal(top.data, [[[10, 11], [22, 23], [34, 35]],
                                             [[16, 17], [28, 29], [40, 41]]])
    top.diff = np.ones((2, 3, 2)) * [[[1], [2], [3]]]   # dy = channel number + 1
    layer.backward([top], [True], [bottom])
    np.testing.assert_array_equal(layer.blobs[0].diff, [4, 8, 12])  # 4 values each
    np.testing.assert_array_equal(bottom.diff, top.diff)
    layer.backward([top], [True], [bottom])  # a parameter's gradient accumulates
    np.testing.assert_array_equal(layer.blobs[0].diff, [8, 16, 24])


def test_known_answer_second_bottom(mode):
    # axis 0 with a (2, 3) bias bottom over x of shape (2, 3, 2): y[a][b][k] = x + b[a][b].
    x = np.zeros((2, 3, 2), dtype=np.float32)
    x[..., 1] = 1
    b = np.float32([[1, 2, 3], [4, 5, 6]])
    layer, bottoms, top = bias(axis=0), [blob_from(x), blob_from(b)], Blob()
    layer.setup(bottoms, [top])
    assert layer.blobs == []
    layer.forward(bottoms, [top])
    np.testing.assert_array_equal(top.data, np.stack([b, b + 1], axis=-1))
    top.diff = np.stack([np.ones((2, 3)), 2 * np.ones((2, 3))], axis=-1)
    for _ in range(2):  # a bottom's gradient is written, not accumulated
        layer.backward([top], [True, True], bottoms)
    np.testing.assert_array_equal(bottoms[1].diff, np.full((2, 3), 3))


def test_scalar_bias_and_all_remaining_axes(mode):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    layer, bottom, top = bias(num_axes=0, filler={"type": "constant", "value": 0.5}), blob_from(x), Blob()
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    assert layer.blobs[0].shape == ()
    np.testing.assert_array_equal(top.data, x + 0.5)
    layer = bias(axis=0, num_axes=-1)   # a bias for every value
    layer.setup([bottom], [top])
    assert layer.blobs[0].shape == (2, 3)


@st.composite
def bias_cases(draw, max_count=12):
    """A bottom shape, an axis, and the bias: a parameter (num_axes) or a second bottom."""
    shape = draw(st.lists(st.integers(1, 3), min_size=1, max_size=4).map(tuple)
                 .filter(lambda s: np.prod(s) <= max_count))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    start = axis % len(shape)
    span = draw(st.integers(0, len(shape) - start))
    seed = draw(st.integers(0, 2**31 - 1))
    if draw(st.booleans()):   # a second bottom shaped like `span` axes from `axis`
        return shape, {"axis": axis}, shape[start:start + span], seed
    num_axes = -1 if span == len(shape) - start and draw(st.booleans()) else span
    return shape, {"axis": axis, "num_axes": num_axes, "filler": {"type": "gaussian"}}, None, seed


def bottoms_of(shape, bias_shape, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(-2, 2, shape)]
    if bias_shape is not None:
        arrays.append(rng.uniform(-2, 2, bias_shape))
    return arrays


@given(bias_cases())
def test_gradient(mode, case):
    shape, fields, bias_shape, seed = case
    bottoms = [blob_from(a) for a in bottoms_of(shape, bias_shape, seed)]
    GradientChecker(1e-2, 1e-3).check_gradient_exhaustive(bias(**fields), bottoms, [Blob()])


@given(bias_cases(max_count=60))
def test_matches_broadcast_sum(mode, case):
    shape, fields, bias_shape, seed = case
    arrays = bottoms_of(shape, bias_shape, seed)
    layer, bottoms, top = bias(**fields), [blob_from(a) for a in arrays], Blob()
    layer.setup(bottoms, [top])
    layer.forward(bottoms, [top])
    b = (bottoms[1] if bias_shape is not None else layer.blobs[0]).data
    start = fields["axis"] % len(shape) if b.ndim else 0
    # numpy broadcasting lines up trailing axes: pad b with the axes after its run
    expected = arrays[0] + b.reshape(b.shape + (1,) * (len(shape) - start - b.ndim))
    np.testing.assert_allclose(top.data, expected, rtol=1e-6, atol=1e-6)


def test_in_place_matches_out_of_place(mode):
    rng = np.random.default_rng(5)
    x, dy = rng.uniform(-1, 1, (2, 3, 4)), rng.uniform(-1, 1, (2, 3, 4))
    results = []
    for in_place in (False, True):
        common.set_random_seed(3)
        layer, bottom = bias(filler={"type": "gaussian"}), blob_from(x)
        top = bottom if in_place else Blob()
        layer.setup([bottom], [top])
        layer.forward([bottom], [top])
        y = top.data.copy()
        top.diff = dy
        layer.backward([top], [True], [bottom])
        results.append((y, bottom.diff.copy(), layer.blobs[0].diff.copy()))
    for out_of_place, in_place in zip(*results):
        np.testing.assert_allclose(in_place, out_of_place, rtol=1e-6)


# ---- the OpenCL twin
@pytest.mark.opencl
@given(bias_cases(max_count=200), st.booleans())
def test_engines_agree(case, propagate):
    shape, fields, bias_shape, seed = case
    arrays = bottoms_of(shape, bias_shape, seed)
    compare_engines(layer_param("Bias", bias_param=fields), arrays,
                    propagate_down=[propagate] + [True] * (len(arrays) - 1), seed=seed)


@pytest.mark.opencl
def test_engines_agree_on_long_sums():
    # 3 bias values of 2 * 700 terms each: several work-items per group share a sum.
    arrays = bottoms_of((2, 3, 700), (3,), 7)
    compare_engines(layer_param("Bias"), arrays, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("two_bottoms", [False, True])
def test_data_stays_on_the_device(gpu_only, two_bottoms):
    layer = bias(filler={"type": "gaussian"})
    bottoms = [blob_from(np.ones((2, 3, 4)))] + [blob_from(np.ones(3))] * two_bottoms
    top = Blob()
    layer.setup(bottoms, [top])
    for blob in bottoms + layer.blobs:
        blob.mutable_gpu_data()
        blob.mutable_gpu_diff()
    top.mutable_gpu_diff()
    before = dict(SyncedMemory.transfers)
    layer.forward(bottoms, [top])
    layer.backward([top], [True] * len(bottoms), bottoms)
    assert SyncedMemory.transfers == before


# ---- bad input
@pytest.mark.parametrize("fields, shapes, message", [
    ({"num_axes": -2}, [(2, 3)], "num_axes must be non-negative, or -1"),
    ({"axis": 1, "num_axes": 2}, [(2, 3)], r"span 2 axes from axis 1, past the end"),
    ({"axis": 2}, [(2, 3)], "axis 2 out of range"),
    ({"axis": 1}, [(2, 3, 4), (4,)], r"bias of shape \(4,\) does not match .* from axis 1"),
    ({"axis": 1}, [(2, 3), (3, 2)], r"bias of shape \(3, 2\) does not match"),
])
def test_bad_input(mode, fields, shapes, message):
    layer = create_layer(layer_param("Bias", "badbias", bias_param=fields))
    with pytest.raises(MinicaffeError, match=message) as err:
        layer.setup([Blob(s) for s in shapes], [Blob()])
    assert "Bias layer 'badbias'" in str(err.value)


def test_bad_blob_counts(mode):
    with pytest.raises(MinicaffeError, match="'bias' takes at most 2 bottom"):
        bias().setup([Blob(2, 3), Blob(3), Blob(3)], [Blob()])
    param = layer_param("Bias", bias_param={})
    param.blobs.add().CopyFrom(blob_from([1.0, 2.0, 3.0]).to_proto())
    with pytest.raises(MinicaffeError, match="takes its bias from bottom"):
        create_layer(param).setup([Blob(2, 3), Blob(3)], [Blob()])
    layer, top = bias(), Blob()   # a given bias is checked against the bottom
    layer.setup([Blob(2, 3)], [top])
    with pytest.raises(MinicaffeError, match=r"bias of shape \(3,\) does not match"):
        layer.forward([Blob(2, 4)], [top])
