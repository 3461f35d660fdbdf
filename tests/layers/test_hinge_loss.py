"""HingeLoss: known L1 and L2 losses and gradients, gradients (Caffe's checker settings),
the OpenCL twin against numpy, bad input."""
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


def hinge(norm="L1", **fields):
    return create_layer(layer_param("HingeLoss", hinge_loss_param={"norm": norm}, **fields))


def run(layer, scores, labels, loss_weight=None):
    loss, _, bottom = run_loss(layer, scores, labels, loss_weight)
    return loss, bottom


# Row 0, label 0: signs (+1, -1, -1), margins max(0, 1 - sign x) = (0, 0.5, 1.5).
# Row 1, label 2: signs (-1, -1, +1), margins (1, 1, 4).
SCORES, LABELS = [[2, -0.5, 0.5], [0, 0, -3]], [0, 2]


def test_known_l1_loss_and_gradient(mode):
    # (0 + 0.5 + 1.5 + 1 + 1 + 4) / N, N = 2; dE/dx = -sign [margin > 0] / N.
    loss, bottom = run(hinge("L1"), SCORES, LABELS)
    assert loss == pytest.approx(4.0)
    np.testing.assert_allclose(bottom[0].cpu_diff(), [[0, 0.5, 0.5], [0.5, 0.5, -0.5]])
    np.testing.assert_array_equal(bottom[1].cpu_diff(), 0)  # labels get nothing


def test_known_l2_loss_and_gradient(mode):
    # (0.25 + 2.25 + 1 + 1 + 16) / 2 = 10.25; dE/dx = -2 sign margin / N.
    loss, bottom = run(hinge("L2"), SCORES, LABELS)
    assert loss == pytest.approx(10.25)
    np.testing.assert_allclose(bottom[0].cpu_diff(), [[0, 0.5, 1.5], [1, 1, -4]])


def test_l1_is_the_default_and_loss_weight_scales(mode):
    loss, bottom = run(create_layer(layer_param("HingeLoss", loss_weight=[2.0])), SCORES, LABELS)
    assert loss == pytest.approx(8.0)
    np.testing.assert_allclose(bottom[0].cpu_diff(), [[0, 1, 1], [1, 1, -1]])


def test_no_loss_beyond_the_margins(mode):
    # True class scored >= 1, the others <= -1: nothing to penalise, no gradient.
    loss, bottom = run(hinge("L2"), [[-1, 1.5, -2]], [1])
    assert loss == 0
    np.testing.assert_array_equal(bottom[0].cpu_diff(), 0)


@st.composite
def cases(draw):
    n, c, h = draw(st.integers(1, 3)), draw(st.integers(2, 4)), draw(st.integers(1, 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    scores = rng.uniform(-3, 3, (n, c, h))
    return scores, rng.integers(0, c * h, n).astype(np.float32)


@given(cases(), st.sampled_from(["L1", "L2"]))
def test_gradient(mode, case, norm):
    # Caffe's settings: L1 (1e-2, 2e-3) skipping scores within 0.01 of the margins' kinks
    # at |x| = 1; L2 (1e-2, 1e-2), smooth there.
    scores, labels = case
    checker = (GradientChecker(1e-2, 2e-3, 1701, kink=1.0, kink_range=0.01) if norm == "L1"
               else GradientChecker(1e-2, 1e-2, 1701))
    checker.check_gradient_exhaustive(hinge(norm), [blob_from(scores), blob_from(labels)],
                                      [Blob()], check_bottom=0)


@given(cases(), st.sampled_from(["L1", "L2"]), st.floats(-2, 2))
def test_engines_agree(gpu_only, case, norm, loss_weight):
    scores, labels = case
    compare_engines(layer_param("HingeLoss", hinge_loss_param={"norm": norm}), [scores, labels],
                    top_diffs=[np.float32(loss_weight)], propagate_down=[True, False])


def test_data_stays_on_the_device(gpu_only):
    layer = hinge("L2")
    bottom, top = [blob_from(SCORES), blob_from(LABELS)], [Blob()]
    layer.setup(bottom, top)
    for blob in bottom:
        blob.gpu_data()
    bottom[0].mutable_gpu_data()
    for _ in range(2):  # the loss weight goes to the device once, in the first backward
        before = dict(SyncedMemory.transfers)
        assert layer.forward(bottom, top) == pytest.approx(10.25)
        layer.backward(top, [True, False], bottom)
    assert SyncedMemory.transfers == {**before, "to_cpu": before["to_cpu"] + 1}


# ---- bad input
def test_one_label_per_item(mode):
    with pytest.raises(MinicaffeError, match=r"HingeLoss layer 'svm'.*one label per item"):
        create_layer(layer_param("HingeLoss", name="svm")).setup(
            [blob_from(np.zeros((2, 3))), blob_from(np.zeros((2, 2)))], [Blob()])


@pytest.mark.parametrize("label", [3, -1])
def test_label_out_of_range(mode, label):
    with pytest.raises(MinicaffeError, match=f"HingeLoss layer.*label {label} at position 1 is out of range"):
        run(hinge(), SCORES, [0, label])


def test_cannot_backpropagate_to_labels(mode):
    layer = hinge()
    bottom, top = [blob_from(SCORES), blob_from(LABELS)], [Blob()]
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    assert not layer.allow_force_backward(1)
    with pytest.raises(MinicaffeError, match="cannot backpropagate to label inputs"):
        layer.backward(top, [True, True], bottom)


def test_batch_dimension_must_match(mode):
    with pytest.raises(MinicaffeError, match="same first"):
        run(hinge(), SCORES, [0, 1, 2])
