"""SoftmaxWithLoss: known loss and gradient, normalization modes, ignore_label, gradients,
the OpenCL twin against numpy, bad input."""
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


def loss_layer(axis=1, **loss_param):
    return create_layer(layer_param("SoftmaxWithLoss", softmax_param={"axis": axis},
                                    loss_param=loss_param))


def run(layer, scores, labels, num_tops=1, loss_weight=None):
    return run_loss(layer, scores, labels, loss_weight, num_tops)


LN2, LN7 = math.log(2), math.log(7)


def test_known_loss_and_gradient(mode):
    # Row 0: p = (1/3, 1/3, 1/3), label 0.  Row 1: p = (0.1, 0.2, 0.7), label 2.
    loss, tops, bottom = run(loss_layer(), [[0, 0, 0], [0, LN2, LN7]], [0, 2])
    expected = (math.log(3) - math.log(0.7)) / 2  # VALID: 2 labelled positions
    assert loss == pytest.approx(expected, rel=1e-6)
    assert float(tops[0].cpu_data()) == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(bottom[0].cpu_diff(),
                               np.array([[-2 / 3, 1 / 3, 1 / 3], [0.1, 0.2, -0.3]]) / 2, atol=1e-6)
    np.testing.assert_array_equal(bottom[1].cpu_diff(), 0)  # labels get nothing


def test_second_top_is_the_probabilities(mode):
    _, tops, _ = run(loss_layer(), [[0, 0, 0], [0, LN2, LN7]], [0, 2], num_tops=2)
    np.testing.assert_allclose(tops[1].cpu_data(), [[1 / 3, 1 / 3, 1 / 3], [0.1, 0.2, 0.7]], rtol=1e-6)


def test_loss_weight_scales_gradient(mode):
    _, _, plain = run(loss_layer(), [[0, 0, 0], [0, LN2, LN7]], [0, 2])
    loss, _, weighted = run(loss_layer(), [[0, 0, 0], [0, LN2, LN7]], [0, 2], loss_weight=3.0)
    np.testing.assert_allclose(weighted[0].cpu_diff(), 3 * plain[0].cpu_diff(), rtol=1e-6)


def test_zero_probability_is_clamped_to_flt_min(mode):
    loss, _, _ = run(loss_layer(), [[0, 200]], [0])  # p_0 = e^-200 underflows to 0 in float32
    assert loss == pytest.approx(-math.log(np.finfo(np.float32).tiny), rel=1e-5)


# Spatial case: N=2, C=3, H=1, W=2 (inner 2); label -1 is ignored at two of four positions.
SCORES = np.random.default_rng(7).standard_normal((2, 3, 1, 2)).astype(np.float32)
LABELS = np.array([[[[0, -1]]], [[[2, -1]]]], dtype=np.float32)


def position_losses():
    """-log p of each labelled position, computed independently in float64."""
    x = SCORES.astype(np.float64)
    p = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    return [-math.log(p[0, 0, 0, 0]), -math.log(p[1, 2, 0, 0])]


@pytest.mark.parametrize("loss_param, divisor", [
    ({"normalization": "FULL"}, 4),        # outer * inner, ignored positions included
    ({"normalization": "VALID"}, 2),       # the two labelled positions
    ({}, 2),                               # VALID is the default
    ({"normalization": "BATCH_SIZE"}, 2),  # N
    ({"normalization": "NONE"}, 1),
    ({"normalize": False}, 2),             # deprecated: false means BATCH_SIZE
    ({"normalize": True}, 2),              # deprecated: true means VALID
    ({"normalization": "FULL", "normalize": False}, 4),  # an explicit normalization wins
])
def test_normalization_modes(mode, loss_param, divisor):
    layer = loss_layer(ignore_label=-1, **loss_param)
    loss, _, bottom = run(layer, SCORES, LABELS)
    assert loss == pytest.approx(sum(position_losses()) / divisor, rel=1e-5)
    dx = bottom[0].cpu_diff()
    np.testing.assert_array_equal(dx[:, :, :, 1], 0)  # ignored positions get no gradient
    np.testing.assert_allclose(dx.sum(axis=1), 0, atol=1e-6)  # softmax gradient sums to 0 over C


def test_normalization_modes_differ_without_ignored_labels(mode):
    scores = np.random.default_rng(1).standard_normal((2, 3, 2, 2)).astype(np.float32)
    labels = np.random.default_rng(2).integers(0, 3, (2, 1, 2, 2)).astype(np.float32)
    none = run(loss_layer(normalization="NONE"), scores, labels)[0]
    assert run(loss_layer(normalization="FULL"), scores, labels)[0] == pytest.approx(none / 8, rel=1e-5)
    assert run(loss_layer(normalization="VALID"), scores, labels)[0] == pytest.approx(none / 8, rel=1e-5)
    assert run(loss_layer(normalization="BATCH_SIZE"), scores, labels)[0] == pytest.approx(none / 2, rel=1e-5)


def test_all_ignored_gives_zero_not_nan(mode):
    loss, _, bottom = run(loss_layer(ignore_label=-1), SCORES, np.full(LABELS.shape, -1))
    assert loss == 0  # VALID with 0 valid positions divides by max(1, 0)
    np.testing.assert_array_equal(bottom[0].cpu_diff(), 0)


def test_ignoring_each_class_in_turn_sums_to_c_minus_1_losses(mode):
    # Caffe's TestForwardIgnoreLabel: with normalize false, each position is left out
    # exactly once over the C runs, so the C losses sum to (C - 1) times the full loss.
    rng = np.random.default_rng(5)
    scores = rng.standard_normal((10, 5, 2, 3)).astype(np.float32)
    labels = rng.integers(0, 5, (10, 1, 2, 3)).astype(np.float32)
    full = run(loss_layer(normalize=False), scores, labels)[0]
    total = sum(run(loss_layer(normalize=False, ignore_label=c), scores, labels)[0] for c in range(5))
    assert total == pytest.approx(4 * full, rel=1e-4)


def test_softmax_axis(mode):
    # Classes on the last axis: (N=2, inner=1, C=3).
    scores = np.array([[[0, 0, 0]], [[0, LN2, LN7]]], dtype=np.float32)
    loss, _, bottom = run(loss_layer(axis=-1), scores, [[0], [2]])
    assert loss == pytest.approx((math.log(3) - math.log(0.7)) / 2, rel=1e-6)
    np.testing.assert_allclose(bottom[0].cpu_diff()[1, 0], [0.05, 0.1, -0.15], atol=1e-6)


@st.composite
def loss_cases(draw):
    n, c, h = draw(st.integers(1, 3)), draw(st.integers(2, 4)), draw(st.integers(1, 2))
    axis = draw(st.sampled_from([1, -1]))
    shape = (n, c, h) if axis == 1 else (n, h, c)
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    labels = rng.integers(0, c, (n, h)).astype(np.float32)
    param = {"normalization": draw(st.sampled_from(["FULL", "VALID", "BATCH_SIZE", "NONE"]))}
    if draw(st.booleans()):
        param["ignore_label"] = int(labels.flat[0])  # ignore at least one position
    return axis, param, blob_from(rng.standard_normal(shape)), blob_from(labels)


@given(loss_cases())
def test_gradient(mode, case):
    axis, param, scores, labels = case
    checker = GradientChecker(1e-2, 1e-2, 1701)
    checker.check_gradient_exhaustive(loss_layer(axis, **param), [scores, labels], [Blob()],
                                      check_bottom=0)


# ---- the OpenCL twin
NORMALIZATIONS = [{"normalization": m} for m in ("FULL", "VALID", "BATCH_SIZE", "NONE")] + [
    {}, {"normalize": False}, {"normalize": True}]


@given(st.lists(st.integers(1, 3), min_size=1, max_size=4), st.integers(1, 3),
       st.integers(2, 5), st.sampled_from(NORMALIZATIONS), st.sampled_from(["none", "some", "all"]),
       st.integers(1, 2), st.integers(0, 2**31 - 1))
def test_engines_agree(gpu_only, other_dims, axis, channels, loss_param, ignore, top_count, seed):
    # Scores (the label dims with C inserted at `axis` >= 1: the batch stays first),
    # labels per position, every normalization, ignore_label matching none, some or all
    # positions; the top diff that compare_engines draws acts as the loss weight.
    axis = min(axis, len(other_dims))
    shape = tuple(other_dims[:axis]) + (channels,) + tuple(other_dims[axis:])
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal(shape) * 3
    labels = rng.integers(0, channels, other_dims).astype(np.float32)
    loss_param = dict(loss_param)
    if ignore == "some":
        loss_param["ignore_label"] = int(labels.flat[0])
    elif ignore == "all":
        loss_param["ignore_label"] = -1
        labels[...] = -1
    param = layer_param("SoftmaxWithLoss", softmax_param={"axis": axis}, loss_param=loss_param)
    compare_engines(param, [scores, labels], top_count, propagate_down=[True, False])


def test_data_stays_on_the_device(gpu_only):
    # Scores and labels on the device: forward and backward copy only the scalar loss
    # back (Layer.forward reads it) and nothing in; the valid count stays on the device.
    layer = loss_layer(ignore_label=-1)
    bottom, top = [blob_from(SCORES), blob_from(LABELS)], [Blob()]
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
def test_label_count_must_match(mode):
    with pytest.raises(MinicaffeError, match="number of labels must match.*need 4 labels"):
        run(loss_layer(), np.zeros((2, 3, 2)), np.zeros((2, 3)))


@pytest.mark.parametrize("label", [3, -1, 7])
def test_label_out_of_range(mode, label):
    with pytest.raises(MinicaffeError, match=f"label {label} at position 1 is out of range"):
        run(loss_layer(), np.zeros((2, 3)), [0, label])


def test_cannot_backpropagate_to_labels(mode):
    layer = loss_layer()
    bottom, top = [blob_from(np.zeros((2, 3))), blob_from([0, 1])], [Blob()]
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    assert not layer.allow_force_backward(1)
    with pytest.raises(MinicaffeError, match="cannot backpropagate to label inputs"):
        layer.backward(top, [True, True], bottom)


def test_batch_dimension_must_match(mode):
    with pytest.raises(MinicaffeError, match="same first"):
        run(loss_layer(), np.zeros((2, 3)), np.zeros((3,)))
