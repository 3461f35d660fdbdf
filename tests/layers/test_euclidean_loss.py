"""EuclideanLoss: known loss and gradients, loss weight, gradients to both bottoms, the
OpenCL twin against numpy, bad input."""
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
from tests.strategies import blob_from, blobs, layer_param, shapes


def euclidean(**fields):
    return create_layer(layer_param("EuclideanLoss", **fields))


def run(layer, a, b):
    bottom, top = [blob_from(a), blob_from(b)], [Blob()]
    layer.setup(bottom, top)
    loss = layer.forward(bottom, top)
    layer.backward(top, [True, True], bottom)
    return loss, top[0], bottom


def test_known_loss_and_gradients(mode):
    # d = a - b = [[1, 2], [2, 3]]: |d|^2 = 18, over 2N = 4 -> 4.5; dE/da = d / N, dE/db = -d / N
    loss, top, bottom = run(euclidean(), [[1, 2], [3, 4]], [[0, 0], [1, 1]])
    assert loss == pytest.approx(4.5)
    assert float(top.cpu_data()) == pytest.approx(4.5)
    np.testing.assert_allclose(bottom[0].cpu_diff(), [[0.5, 1], [1, 1.5]])
    np.testing.assert_allclose(bottom[1].cpu_diff(), [[-0.5, -1], [-1, -1.5]])


def test_loss_weight_scales_loss_and_gradients(mode):
    # Caffe's TestForward: a loss weight of 3 triples the contribution to the objective.
    loss, _, bottom = run(euclidean(loss_weight=[3.0]), [[1, 2], [3, 4]], [[0, 0], [1, 1]])
    assert loss == pytest.approx(3 * 4.5)
    np.testing.assert_allclose(bottom[0].cpu_diff(), 3 * np.array([[0.5, 1], [1, 1.5]]))


def test_shapes_may_differ_beyond_the_item_count(mode):
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    loss, _, bottom = run(euclidean(), a, np.zeros((2, 4, 1, 1)))
    assert loss == pytest.approx((a ** 2).sum() / 4)
    assert bottom[1].cpu_diff().shape == (2, 4, 1, 1)
    np.testing.assert_allclose(bottom[1].cpu_diff().reshape(2, 4), -a / 2)


@st.composite
def pairs(draw):
    shape = draw(shapes(max_side=4))
    return draw(blobs(shape=shape)), draw(blobs(shape=shape))


@given(pairs())
def test_gradient(mode, pair):
    GradientChecker(1e-2, 1e-2, 1701).check_gradient_exhaustive(euclidean(), list(pair), [Blob()])


@given(pairs())
def test_symmetric_and_zero_on_equal_inputs(mode, pair):
    a, b = (blob.cpu_data().copy() for blob in pair)
    ab = run(euclidean(), a, b)[0]
    assert ab == pytest.approx(run(euclidean(), b, a)[0], rel=1e-6)
    assert ab >= 0
    assert run(euclidean(), a, a)[0] == 0


def test_both_bottoms_may_be_forced_to_backpropagate(mode):
    layer = euclidean()
    assert layer.allow_force_backward(0) and layer.allow_force_backward(1)


# ---- the OpenCL twin
@given(pairs(), st.booleans(), st.lists(st.booleans(), min_size=2, max_size=2))
def test_engines_agree(gpu_only, pair, trailing_ones, propagate_down):
    # b may carry extra trailing 1-axes (only the count per item must match); the top
    # diff that compare_engines draws acts as the loss weight.
    a, b = (blob.cpu_data().copy() for blob in pair)
    if trailing_ones:
        b = b.reshape(b.shape + (1, 1))
    compare_engines(layer_param("EuclideanLoss"), [a, b], propagate_down=propagate_down)


def test_data_stays_on_the_device(gpu_only):
    # Both bottoms on the device: only the scalar loss comes back (Layer.forward reads it).
    layer = euclidean()
    bottom, top = [blob_from([[1, 2], [3, 4]]), blob_from([[0, 0], [1, 1]])], [Blob()]
    layer.setup(bottom, top)
    for blob in bottom:
        blob.mutable_gpu_data()
    for _ in range(2):  # the loss weight goes to the device once, in the first backward
        before = dict(SyncedMemory.transfers)
        assert layer.forward(bottom, top) == pytest.approx(4.5)
        layer.backward(top, [True, True], bottom)
    assert SyncedMemory.transfers == {**before, "to_cpu": before["to_cpu"] + 1}


@pytest.mark.parametrize("a_shape, b_shape, message", [
    ((2, 3), (2, 4), "inputs must have the same dimension"),
    ((2, 3), (3, 3), "same first"),
])
def test_bad_shapes(mode, a_shape, b_shape, message):
    with pytest.raises(MinicaffeError, match=message):
        euclidean().setup([blob_from(np.zeros(a_shape)), blob_from(np.zeros(b_shape))], [Blob()])
