"""MultinomialLogisticLoss: known loss and gradient, the 1e-20 floor, gradients (Caffe's
checker settings), the OpenCL twin against numpy, bad input."""
import math

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
from tests.strategies import blob_from, layer_param, run_loss


def mll(**fields):
    return create_layer(layer_param("MultinomialLogisticLoss", **fields))


def run(layer, prob, labels, loss_weight=None):
    loss, tops, bottom = run_loss(layer, prob, labels, loss_weight)
    return loss, tops[0], bottom


PROB = [[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]


def test_known_loss_and_gradient(mode):
    # -(ln 0.5 + ln 0.8) / N with N = 2; dE/dp = -1 / (N p) at the true class, 0 elsewhere.
    loss, top, bottom = run(mll(), PROB, [0, 1])
    assert loss == pytest.approx((math.log(2) + math.log(1.25)) / 2, rel=1e-6)
    assert float(top.cpu_data()) == pytest.approx(loss)
    np.testing.assert_allclose(bottom[0].cpu_diff(), [[-1, 0, 0], [0, -0.625, 0]], rtol=1e-6)
    np.testing.assert_array_equal(bottom[1].cpu_diff(), 0)  # labels get nothing


def test_loss_weight_scales_loss_and_gradient(mode):
    loss, _, bottom = run(mll(loss_weight=[3.0]), PROB, [0, 1])
    assert loss == pytest.approx(3 * (math.log(2) + math.log(1.25)) / 2, rel=1e-6)
    np.testing.assert_allclose(bottom[0].cpu_diff(), [[-3, 0, 0], [0, -1.875, 0]], rtol=1e-6)


def test_zero_probability_is_floored_at_1e_minus_20(mode):
    # Caffe's kLOG_THRESHOLD, in the loss and in the gradient: -ln(1e-20) = 20 ln 10.
    loss, _, bottom = run(mll(), [[0.0, 1.0]], [0])
    assert loss == pytest.approx(20 * math.log(10), rel=1e-6)
    assert bottom[0].cpu_diff()[0, 0] == pytest.approx(-1e20, rel=1e-6)


def test_scores_may_have_trailing_axes(mode):
    # (N, C, H) counts C * H = 4 "classes" per item; the label indexes the flattened row.
    prob = np.array([[[0.1, 0.2], [0.3, 0.4]]])
    loss, _, bottom = run(mll(), prob, [[[[2]]]])  # label of shape (1, 1, 1, 1)
    assert loss == pytest.approx(-math.log(0.3), rel=1e-6)
    assert bottom[0].cpu_diff()[0, 1, 0] == pytest.approx(-1 / 0.3, rel=1e-6)


@st.composite
def cases(draw):
    """Positive rows that sum to 1 (Caffe's PositiveUnitballFiller), labels in [0, D)."""
    n, c, h = draw(st.integers(1, 3)), draw(st.integers(2, 4)), draw(st.integers(1, 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    prob = rng.uniform(0, 1, (n, c, h))
    prob /= prob.sum(axis=(1, 2), keepdims=True)
    return prob, rng.integers(0, c * h, n).astype(np.float32)


@given(cases())
def test_gradient(mode, case):
    # Caffe's settings: stepsize 1e-2, threshold 2e-2, and probabilities within 0.05 of 0
    # skipped (the log is too curved there for a finite difference of step 1e-2).
    prob, labels = case
    checker = GradientChecker(1e-2, 2e-2, 1701, kink=0.0, kink_range=0.05)
    checker.check_gradient_exhaustive(mll(), [blob_from(prob), blob_from(labels)], [Blob()],
                                      check_bottom=0)


@given(cases(), st.floats(-2, 2))
def test_engines_agree(gpu_only, case, loss_weight):
    prob, labels = case
    compare_engines(layer_param("MultinomialLogisticLoss"), [prob, labels],
                    top_diffs=[np.float32(loss_weight)], propagate_down=[True, False])


def test_data_stays_on_the_device(gpu_only):
    # Probabilities and labels on the device: only the scalar loss comes back.
    layer = mll()
    bottom, top = [blob_from(PROB), blob_from([0, 1])], [Blob()]
    layer.setup(bottom, top)
    for blob in bottom:
        blob.gpu_data()
    bottom[0].mutable_gpu_data()
    for _ in range(2):  # the loss weight goes to the device once, in the first backward
        before = dict(SyncedMemory.transfers)
        layer.forward(bottom, top)
        layer.backward(top, [True, False], bottom)
    assert SyncedMemory.transfers == {**before, "to_cpu": before["to_cpu"] + 1}


# ---- bad input
def test_one_label_per_item(mode):
    with pytest.raises(MinicaffeError, match=r"MultinomialLogisticLoss layer 'mll'.*one label per item"):
        create_layer(layer_param("MultinomialLogisticLoss", name="mll")).setup(
            [blob_from(np.full((2, 3), 1 / 3)), blob_from(np.zeros((2, 2)))], [Blob()])


@pytest.mark.parametrize("label", [3, -1])
def test_label_out_of_range(mode, label):
    with pytest.raises(MinicaffeError, match=f"label {label} at position 1 is out of range"):
        run(mll(), PROB, [0, label])


def test_cannot_backpropagate_to_labels(mode):
    layer = mll()
    bottom, top = [blob_from(PROB), blob_from([0, 1])], [Blob()]
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    assert not layer.allow_force_backward(1)
    with pytest.raises(MinicaffeError, match="cannot backpropagate to label inputs"):
        layer.backward(top, [True, True], bottom)


def test_batch_dimension_must_match(mode):
    with pytest.raises(MinicaffeError, match="same first"):
        run(mll(), PROB, [0, 1, 2])
