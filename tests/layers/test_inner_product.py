"""InnerProduct: a hand-computed product, axis and transpose, gradients (Caffe's checker:
stepsize 1e-2, threshold 1e-3, exhaustive), accumulation, the OpenCL twin against numpy,
bad input.
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
from tests.strategies import blob_from, blobs, layer_param


def inner_product(**fields):
    fields.setdefault("weight_filler", {"type": "gaussian"})
    fields.setdefault("bias_filler", {"type": "gaussian"})
    return create_layer(layer_param("InnerProduct", "ip", inner_product_param=fields))


def run(layer, bottom):
    top = Blob()
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    return top


def test_known_answer(mode):
    # x = [[1, 2, 3], [-1, 0, 1]], W = [[1, 0, -1], [2, 1, 0]], b = [0.5, -1]
    x = blob_from([[1, 2, 3], [-1, 0, 1]])
    layer = inner_product(num_output=2)
    top = Blob()
    layer.setup([x], [top])
    layer.blobs[0].data = [[1, 0, -1], [2, 1, 0]]
    layer.blobs[1].data = [0.5, -1]
    layer.forward([x], [top])
    np.testing.assert_array_equal(top.data, [[1 - 3 + 0.5, 2 + 2 - 1], [-1 - 1 + 0.5, -2 - 1]])
    # Backward with dE/dy = [[1, 0], [0, 1]]: dW = dy^T x, db = column sums, dx = dy W.
    top.diff = [[1, 0], [0, 1]]
    layer.backward([top], [True], [x])
    np.testing.assert_array_equal(layer.blobs[0].diff, [[1, 2, 3], [-1, 0, 1]])
    np.testing.assert_array_equal(layer.blobs[1].diff, [1, 1])
    np.testing.assert_array_equal(x.diff, [[1, 0, -1], [2, 1, 0]])


@st.composite
def ip_cases(draw):
    shape = draw(st.lists(st.integers(1, 3), min_size=1, max_size=4).map(tuple))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    fields = {"num_output": draw(st.integers(1, 3)), "axis": axis,
              "transpose": draw(st.booleans()), "bias_term": draw(st.booleans())}
    return draw(blobs(shape=shape, low=-1, high=1)), fields


@given(case=ip_cases())
def test_gradient_exhaustive(mode, case):
    bottom, fields = case
    GradientChecker(1e-2, 1e-3).check_gradient_exhaustive(inner_product(**fields), [bottom], [Blob()])


@given(case=ip_cases())
def test_matches_matrix_product_and_transpose(mode, case):
    bottom, fields = case
    layer = inner_product(**fields)
    top = run(layer, bottom)
    axis = fields["axis"] % bottom.num_axes
    assert top.shape == (*bottom.shape[:axis], fields["num_output"])
    x = bottom.data.reshape(bottom.count_range(0, axis), -1).astype(np.float64)
    w = layer.blobs[0].data.astype(np.float64)
    assert w.shape == ((x.shape[1], fields["num_output"]) if fields["transpose"]
                       else (fields["num_output"], x.shape[1]))
    expected = x @ (w if fields["transpose"] else w.T)
    if fields["bias_term"]:
        expected += layer.blobs[1].data
    np.testing.assert_allclose(top.data.reshape(expected.shape), expected, rtol=1e-5, atol=1e-5)
    # The transposed layout with W^T stored gives the same top.
    other = inner_product(**{**fields, "transpose": not fields["transpose"]})
    other_top = Blob()
    other.setup([bottom], [other_top])
    other.blobs[0].data = layer.blobs[0].data.T
    if fields["bias_term"]:
        other.blobs[1].data = layer.blobs[1].data
    other.forward([bottom], [other_top])
    np.testing.assert_allclose(other_top.data, top.data, rtol=1e-6, atol=1e-6)


def test_gradients_accumulate_and_flags(mode):
    bottom = blob_from(np.random.default_rng(0).uniform(-1, 1, (4, 2, 3)))
    layer = inner_product(num_output=5)
    top = run(layer, bottom)
    assert top.shape == (4, 5)
    top.diff = np.random.default_rng(1).uniform(-1, 1, (4, 5))
    layer.backward([top], [True], [bottom])
    once = [b.diff.copy() for b in layer.blobs] + [bottom.diff.copy()]
    layer.backward([top], [True], [bottom])
    np.testing.assert_allclose(layer.blobs[0].diff, 2 * once[0], rtol=1e-6)
    np.testing.assert_allclose(layer.blobs[1].diff, 2 * once[1], rtol=1e-6)
    np.testing.assert_array_equal(bottom.diff, once[2])
    bottom.diff = 3.0
    layer.param_propagate_down = [False, False]
    layer.backward([top], [False], [bottom])
    assert np.all(bottom.diff == 3.0)
    np.testing.assert_array_equal(layer.blobs[0].diff, 2 * once[0])


def test_default_fillers_and_float32(mode):
    layer = create_layer(layer_param("InnerProduct", "ip", inner_product_param={"num_output": 3}))
    top = run(layer, blob_from(np.ones((2, 4))))
    assert not layer.blobs[0].data.any() and not layer.blobs[1].data.any()
    assert top.data.dtype == np.float32 and not top.data.any()


# ---- the OpenCL twin
@st.composite
def engine_cases(draw):
    """Shapes up to 4 axes of up to 6 and up to 24 outputs: large enough that every
    GEMM kernel the device may pick (vector strips, dot products, tiles) gets used."""
    shape = draw(st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple))
    fields = {"num_output": draw(st.integers(1, 24)),
              "axis": draw(st.integers(-len(shape), len(shape) - 1)),
              "transpose": draw(st.booleans()), "bias_term": draw(st.booleans()),
              "weight_filler": {"type": "gaussian"}, "bias_filler": {"type": "gaussian"}}
    return shape, fields, draw(st.booleans()), draw(st.integers(0, 2**31 - 1))


@given(engine_cases())
def test_engines_agree(gpu_only, case):
    shape, fields, propagate, seed = case
    x = np.random.default_rng(seed).uniform(-1, 1, shape)
    compare_engines(layer_param("InnerProduct", "ip", inner_product_param=fields), [x],
                    propagate_down=[propagate])


@pytest.mark.parametrize("transpose", [False, True])
def test_data_stays_on_the_device(gpu_only, transpose):
    # With the bottom data and the top diff only on the device (as between layers of a
    # net), forward and backward copy nothing either way: a host read would be counted.
    layer = inner_product(num_output=20, transpose=transpose)
    bottom, top = blob_from(np.random.default_rng(0).uniform(-1, 1, (5, 3, 6))), Blob()
    layer.setup([bottom], [top])
    bottom.mutable_gpu_data()
    top.mutable_gpu_diff()
    for blob in layer.blobs:
        blob.mutable_gpu_data()
        blob.mutable_gpu_diff()
    before = dict(SyncedMemory.transfers)
    layer.forward([bottom], [top])
    layer.backward([top], [True], [bottom])
    assert SyncedMemory.transfers == before


# ---- bad input
@pytest.mark.parametrize("fields, shape, message", [
    ({}, (2, 3), "num_output must be specified"),
    ({"num_output": 2, "axis": 3}, (2, 3), "axis 3 out of range"),
])
def test_bad_input(mode, fields, shape, message):
    layer = create_layer(layer_param("InnerProduct", "badip", inner_product_param=fields))
    with pytest.raises(MinicaffeError, match=message) as err:
        layer.setup([Blob(shape)], [Blob()])
    assert "'badip'" in str(err.value) and "InnerProduct" in str(err.value)


def test_bad_input_after_setup_and_given_weights(mode):
    layer = inner_product(num_output=2)
    top = Blob()
    layer.setup([Blob(2, 3, 4)], [top])
    with pytest.raises(MinicaffeError, match="'ip'.*has 10 inputs per example.*expect 12"):
        layer.forward([Blob(2, 5, 2)], [top])
    layer.forward([Blob(5, 4, 3)], [top])  # another batch size with the same K is fine
    assert top.shape == (5, 2)
    param = layer_param("InnerProduct", "ip", inner_product_param={"num_output": 2})
    param.blobs.add().CopyFrom(blob_from(np.ones((3, 2))).to_proto())
    param.blobs.add().CopyFrom(blob_from([0.0, 0.0]).to_proto())
    with pytest.raises(MinicaffeError, match=r"'ip'.*weight shape \(3, 2\) given, expected \(2, 3\)"):
        create_layer(param).setup([Blob(4, 3)], [Blob()])
