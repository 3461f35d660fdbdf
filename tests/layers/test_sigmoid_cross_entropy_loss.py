"""SigmoidCrossEntropyLoss: known loss and gradient, stability at large scores, the
normalization modes (BATCH_SIZE by default), ignore_label, gradients (Caffe's checker
settings), the OpenCL twin against numpy, bad input."""
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


def sce(loss_weight=None, **loss_param):
    fields = {"loss_param": loss_param}
    if loss_weight is not None:
        fields["loss_weight"] = [loss_weight]
    return create_layer(layer_param("SigmoidCrossEntropyLoss", **fields))


def run(layer, x, t):
    loss, _, bottom = run_loss(layer, x, t)
    return loss, bottom


LN3 = math.log(3)


def test_known_loss_and_gradient(mode):
    # sigma(0) = 1/2, sigma(ln 3) = 3/4, sigma(-ln 3) = 1/4. Cross-entropies: t = 1 at 1/2:
    # ln 2; t = 1 at 3/4: ln 4/3; t = 0 at 1/4: ln 4/3; t = 1/2 at 1/2: ln 2. Divided by
    # N = 2 (BATCH_SIZE, the default here): ln 2 + ln 4/3 = ln 8/3. dE/dx = (sigma - t) / N.
    loss, bottom = run(sce(), [[0, LN3], [-LN3, 0]], [[1, 1], [0, 0.5]])
    assert loss == pytest.approx(math.log(8 / 3), rel=1e-6)
    np.testing.assert_allclose(bottom[0].cpu_diff(), [[-0.25, -0.125], [0.125, 0]], atol=1e-7)
    np.testing.assert_array_equal(bottom[1].cpu_diff(), 0)  # targets get nothing


def test_stable_at_large_scores(mode):
    # A naive log(sigma(x)) gives log 0 = -inf here; the true losses are 100 each.
    loss, bottom = run(sce(), [[100, -100]], [[0, 1]])
    assert loss == pytest.approx(200, rel=1e-6)
    np.testing.assert_allclose(bottom[0].cpu_diff(), [[1, -1]])


@given(st.integers(0, 2**31 - 1), st.floats(0.1, 5))
def test_matches_the_plain_formula(mode, seed, loss_weight):
    # Caffe's TestSigmoidCrossEntropyLoss: against -sum(t log p + (1 - t) log(1 - p)) / N,
    # in float64, with a loss weight, for Gaussian scores and uniform targets.
    rng = np.random.default_rng(seed)
    x, t = rng.standard_normal((3, 4)), rng.uniform(0, 1, (3, 4))
    p = 1 / (1 + np.exp(-x))
    expected = -(t * np.log(p) + (1 - t) * np.log(1 - p)).sum() / 3
    loss, _ = run(sce(loss_weight=loss_weight), x, t)
    assert loss == pytest.approx(loss_weight * expected, rel=1e-5)


# N = 2 items of 3 targets, two of them ignored (-1).
X = np.array([[0.5, -1.0, 2.0], [0.0, 1.5, -0.5]], dtype=np.float32)
T = np.array([[1.0, -1.0, 0.0], [-1.0, 0.3, 1.0]], dtype=np.float32)


def element_losses():
    """Each kept target's cross-entropy, in float64."""
    x, t = X.astype(np.float64), T.astype(np.float64)
    p = 1 / (1 + np.exp(-x))
    return (-(t * np.log(p) + (1 - t) * np.log(1 - p)))[T != -1]


@pytest.mark.parametrize("loss_param, divisor", [
    ({"normalization": "FULL"}, 6),        # every target, ignored ones included
    ({"normalization": "VALID"}, 4),       # the four kept targets
    ({"normalization": "BATCH_SIZE"}, 2),  # N
    ({"normalization": "NONE"}, 1),
    ({}, 2),                               # unset: BATCH_SIZE, not the proto default VALID
    ({"normalize": True}, 4),              # deprecated: true means VALID
    ({"normalize": False}, 2),             # deprecated: false means BATCH_SIZE
])
def test_normalization_modes(mode, loss_param, divisor):
    loss, bottom = run(sce(ignore_label=-1, **loss_param), X, T)
    assert loss == pytest.approx(element_losses().sum() / divisor, rel=1e-5)
    dx = bottom[0].cpu_diff()
    np.testing.assert_array_equal(dx[T == -1], 0)  # ignored targets get no gradient
    kept = (1 / (1 + np.exp(-X)) - T) / divisor
    np.testing.assert_allclose(dx[T != -1], kept[T != -1], rtol=1e-5)


def test_ignore_label_compares_the_truncated_target(mode):
    # As Caffe's static_cast<int>: with ignore_label 0, the targets 0.5 and 0.2 are ignored
    # too, leaving only the target 1 (at x = 0: ln 2), divided by N = 1.
    loss, bottom = run(sce(ignore_label=0), [[0, 0, 0]], [[0.5, 0.2, 1]])
    assert loss == pytest.approx(math.log(2), rel=1e-6)
    np.testing.assert_allclose(bottom[0].cpu_diff(), [[0, 0, -0.5]])


def test_without_ignore_label_nothing_is_ignored(mode):
    # ignore_label is unset by default: targets 0 are learned from, not skipped.
    loss, _ = run(sce(normalization="VALID"), [[0, 0]], [[0, 0]])
    assert loss == pytest.approx(math.log(2), rel=1e-6)  # 2 ln 2 over 2 kept targets


def test_all_ignored_gives_zero_not_nan(mode):
    loss, bottom = run(sce(ignore_label=-1, normalization="VALID"), X, np.full(T.shape, -1))
    assert loss == 0
    np.testing.assert_array_equal(bottom[0].cpu_diff(), 0)


NORMALIZATIONS = [{"normalization": m} for m in ("FULL", "VALID", "BATCH_SIZE", "NONE")] + [
    {}, {"normalize": True}, {"normalize": False}]


@st.composite
def cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=3)))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    x, t = rng.standard_normal(shape), rng.uniform(0, 1, shape)
    loss_param = dict(draw(st.sampled_from(NORMALIZATIONS)))
    ignore = draw(st.sampled_from(["none", "some", "all"]))
    if ignore != "none":
        loss_param["ignore_label"] = -1
        t[rng.uniform(size=shape) < 0.5 if ignore == "some" else ...] = -1
    return x, t, loss_param


@given(cases())
def test_gradient(mode, case):
    # Caffe's settings (1e-2, 1e-2) and its loss weight 3.7.
    x, t, loss_param = case
    checker = GradientChecker(1e-2, 1e-2, 1701)
    checker.check_gradient_exhaustive(sce(loss_weight=3.7, **loss_param),
                                      [blob_from(x), blob_from(t)], [Blob()], check_bottom=0)


@given(cases(), st.floats(-2, 2))
def test_engines_agree(gpu_only, case, loss_weight):
    x, t, loss_param = case
    compare_engines(layer_param("SigmoidCrossEntropyLoss", loss_param=loss_param), [x * 3, t],
                    top_diffs=[np.float32(loss_weight)], propagate_down=[True, False])


def test_data_stays_on_the_device(gpu_only):
    # Scores and targets on the device: only the scalar loss comes back; the valid count
    # and the normalizer stay there.
    layer = sce(ignore_label=-1, normalization="VALID")
    bottom, top = [blob_from(X), blob_from(T)], [Blob()]
    layer.setup(bottom, top)
    for blob in bottom:
        blob.mutable_gpu_data()
    for _ in range(2):  # the loss weight goes to the device once, in the first backward
        before = dict(SyncedMemory.transfers)
        assert layer.forward(bottom, top) == pytest.approx(element_losses().sum() / 4, rel=1e-5)
        layer.backward(top, [True, False], bottom)
    assert SyncedMemory.transfers == {**before, "to_cpu": before["to_cpu"] + 1}


# ---- bad input
def test_counts_must_match(mode):
    layer = create_layer(layer_param("SigmoidCrossEntropyLoss", name="tags"))
    with pytest.raises(MinicaffeError, match="SigmoidCrossEntropyLoss layer 'tags'.*same count"):
        layer.setup([blob_from(np.zeros((2, 3))), blob_from(np.zeros((2, 2)))], [Blob()])


def test_batch_dimension_must_match(mode):
    with pytest.raises(MinicaffeError, match="same first"):
        run(sce(), np.zeros((2, 3)), np.zeros((3, 2)))


def test_cannot_backpropagate_to_targets(mode):
    layer = sce()
    bottom, top = [blob_from(X), blob_from(T)], [Blob()]
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    assert not layer.allow_force_backward(1)
    with pytest.raises(MinicaffeError, match="cannot backpropagate to label inputs"):
        layer.backward(top, [True, True], bottom)
