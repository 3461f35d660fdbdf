"""Embed: known lookup and accumulated gradients, gradients (Caffe's checker settings),
engines agree, index checks, bad params. Tests taking `mode` run once per engine."""
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
from tests.strategies import blob_from, layer_param, shapes

W = np.float32([[1, 2], [3, 4], [5, 6]])  # input_dim 3, num_output 2
UNIFORM = {"type": "uniform", "min": -10, "max": 10}  # Caffe's test filler


def embed_param(name="embed", **fields):
    fields = {"input_dim": 3, "num_output": 2, **fields}
    return layer_param("Embed", name=name, embed_param=fields)


def embed(name="embed", **fields):
    return create_layer(embed_param(name, **fields))


def test_known_values(mode):
    # Indices (2, 0, 2) pick rows 2, 0, 2 of W; the bias (10, 20) is added to each.
    layer, x, top = embed(), blob_from([[2], [0], [2]]), Blob()
    layer.setup([x], [top])
    assert [b.shape for b in layer.blobs] == [(3, 2), (2,)]
    assert top.shape == (3, 1, 2)
    layer.blobs[0].data, layer.blobs[1].data = W, [10, 20]
    layer.forward([x], [top])
    np.testing.assert_array_equal(top.cpu_data()[:, 0], [[15, 26], [11, 22], [15, 26]])
    # Backward adds into the parameter diffs (which hold 1 here): row 2 collects the diffs
    # of both positions that used it, row 1 nothing; the bias collects every position.
    layer.blobs[0].diff, layer.blobs[1].diff = np.ones((3, 2)), [1, 1]
    top.diff = [[[1, 2]], [[10, 20]], [[100, 200]]]
    layer.backward([top], [False], [x])
    np.testing.assert_array_equal(layer.blobs[0].cpu_diff(), [[11, 21], [1, 1], [102, 203]])
    np.testing.assert_array_equal(layer.blobs[1].cpu_diff(), [112, 223])


def test_no_bias(mode):
    layer, x, top = embed(bias_term=False), blob_from([1, 1]), Blob()
    layer.setup([x], [top])
    assert len(layer.blobs) == 1
    layer.blobs[0].data = W
    layer.forward([x], [top])
    np.testing.assert_array_equal(top.cpu_data(), [[3, 4], [3, 4]])


def test_weights_given_in_the_prototxt_are_kept(mode):
    param = embed_param(bias_term=False)
    param.blobs.add().CopyFrom(blob_from(W).to_proto())
    layer, x, top = create_layer(param), blob_from([0, 2]), Blob()
    layer.setup([x], [top])
    layer.forward([x], [top])
    np.testing.assert_array_equal(top.cpu_data(), [[1, 2], [5, 6]])


@st.composite
def embed_cases(draw, max_side=3):
    input_dim, num_output = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    shape = draw(shapes(min_axes=1, max_axes=2, max_side=max_side))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    indices = rng.integers(0, input_dim, shape)  # repeats are likely: they must add up
    fields = {"input_dim": input_dim, "num_output": num_output, "bias_term": draw(st.booleans()),
              "weight_filler": UNIFORM, "bias_filler": UNIFORM}
    return fields, indices


@given(case=embed_cases())
def test_rows_are_looked_up(mode, case):
    fields, indices = case
    layer, x, top = embed(**fields), blob_from(indices), Blob()
    layer.setup([x], [top])
    layer.forward([x], [top])
    expected = layer.blobs[0].cpu_data()[indices]
    if fields["bias_term"]:
        expected = expected + layer.blobs[1].cpu_data()
    np.testing.assert_allclose(top.cpu_data(), expected, rtol=1e-6)


@given(case=embed_cases(max_side=2))
def test_gradient(mode, case):
    fields, indices = case
    checker = GradientChecker(1e-2, 1e-3)
    checker.check_gradient_exhaustive(embed(**fields), [blob_from(indices)], [Blob()],
                                      check_bottom=-2)  # the parameters only, as Caffe's test


@pytest.mark.opencl
@given(case=embed_cases(max_side=4))
def test_engines_agree(case):
    fields, indices = case
    compare_engines(embed_param(**fields), [indices], propagate_down=[False])


@pytest.mark.opencl
def test_device_path_makes_no_host_copies():
    # The indices are read on the host for their check: like labels from a Data layer
    # they are on both sides, so that costs no copy.
    layer, x, top = embed(), blob_from([0, 2, 0]), Blob()
    with common.using_mode(common.GPU):
        layer.setup([x], [top])
        layer.blobs[0].data, layer.blobs[1].data = W, [0, 0]
        top.diff = np.ones((3, 2))
        top.gpu_diff(), x.gpu_data()
        for blob in layer.blobs:
            blob.gpu_data(), blob.mutable_gpu_diff()
        before = dict(SyncedMemory.transfers)
        layer.forward([x], [top])
        layer.backward([top], [False], [x])
        assert SyncedMemory.transfers == before
    np.testing.assert_array_equal(top.cpu_data(), [[1, 2], [5, 6], [1, 2]])
    np.testing.assert_array_equal(layer.blobs[0].cpu_diff(), [[2, 2], [0, 0], [1, 1]])


@pytest.mark.parametrize("index", [3, -1, 1.5, float("nan")])
def test_bad_index(mode, index):
    layer, x, top = embed("embed_bad"), blob_from([0, index]), Blob()
    layer.setup([x], [top])
    with pytest.raises(MinicaffeError, match=r"Embed layer 'embed_bad': index .* at position 1 .* "
                                             r"not a whole number in \[0, 3\)"):
        layer.forward([x], [top])


@pytest.mark.parametrize("fields, message", [
    ({"num_output": 0}, r"num_output must be specified and positive"),
    ({"input_dim": 0}, r"input_dim must be specified and positive"),
])
def test_bad_params(mode, fields, message):
    with pytest.raises(MinicaffeError, match=r"Embed layer 'embed_bad': .*" + message):
        embed("embed_bad", **fields).setup([blob_from([0])], [Blob()])


def test_given_weights_of_the_wrong_shape(mode):
    param = embed_param("embed_bad", bias_term=False)
    param.blobs.add().CopyFrom(blob_from(W.T).to_proto())
    with pytest.raises(MinicaffeError, match=r"Embed layer 'embed_bad': weight shape \(2, 3\) "
                                             r"given, expected \(3, 2\)"):
        create_layer(param).setup([blob_from([0])], [Blob()])


def test_no_gradient_for_the_indices(mode):
    layer, x, top = embed("embed_bad"), blob_from([0]), Blob()
    layer.setup([x], [top])
    layer.forward([x], [top])
    with pytest.raises(MinicaffeError, match=r"Embed layer 'embed_bad': cannot backpropagate "
                                             r"to the indices"):
        layer.backward([top], [True], [x])
