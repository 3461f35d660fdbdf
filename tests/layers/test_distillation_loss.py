"""DistillationLoss (a minicaffe extension): a loss and gradient worked by hand, T = 1 as
soft-target cross entropy, the T^2 scaling, gradients, the OpenCL twin against numpy, bad
input."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.testing import GradientChecker
from minicaffe.testing.engines import compare_engines
from tests.strategies import blob_from, layer_param, run_loss


def distill_layer(temperature=4.0, axis=1, **loss_param):
    return create_layer(layer_param("DistillationLoss", distillation_param={
        "temperature": temperature, "axis": axis}, loss_param=loss_param))


def run(layer, student, teacher, loss_weight=None):
    loss, _, bottom = run_loss(layer, student, teacher, loss_weight)
    return loss, bottom


def softmax64(x, axis=-1):
    """An independent float64 softmax for the expected values."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


LN2, LN7 = math.log(2), math.log(7)


def test_known_loss_and_gradient(mode):
    # T = 2. Row 0: teacher scores 2*(0, ln2, ln7) soften to p = (0.1, 0.2, 0.7), the
    # student's zeros to q = (1/3, 1/3, 1/3). Row 1: the other way round.
    soft = [0, 2 * LN2, 2 * LN7]
    loss, bottom = run(distill_layer(2.0), [[0, 0, 0], soft], [soft, [0, 0, 0]])
    p0, q1 = (0.1, 0.2, 0.7), (0.1, 0.2, 0.7)
    kl0 = sum(p * math.log(p / (1 / 3)) for p in p0)   # KL(p || q) of row 0
    kl1 = sum((1 / 3) * math.log((1 / 3) / q) for q in q1)
    assert loss == pytest.approx(4 * (kl0 + kl1) / 2, rel=1e-5)  # T^2 = 4, batch of 2
    # dE/ds = T / N (q - p) = (2 / 2) (q - p)
    np.testing.assert_allclose(bottom[0].cpu_diff(), [[1 / 3 - 0.1, 1 / 3 - 0.2, 1 / 3 - 0.7],
                                                      [0.1 - 1 / 3, 0.2 - 1 / 3, 0.7 - 1 / 3]], atol=1e-6)
    np.testing.assert_array_equal(bottom[1].cpu_diff(), 0)  # the teacher gets nothing


def test_student_equal_to_teacher_costs_nothing(mode):
    scores = np.random.default_rng(3).standard_normal((4, 10)) * 5
    loss, bottom = run(distill_layer(3.0), scores, scores)
    assert abs(loss) < 1e-5
    np.testing.assert_allclose(bottom[0].cpu_diff(), 0, atol=1e-7)


def test_loss_weight_scales_gradient(mode):
    rng = np.random.default_rng(4)
    s, t = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    _, plain = run(distill_layer(), s, t)
    _, weighted = run(distill_layer(), s, t, loss_weight=0.25)
    np.testing.assert_allclose(weighted[0].cpu_diff(), 0.25 * plain[0].cpu_diff(), rtol=1e-6)


@given(st.integers(1, 4), st.integers(2, 6), st.integers(0, 2**31 - 1))
def test_temperature_one_is_soft_target_cross_entropy(batch, classes, seed):
    # At T = 1 (and T^2 = 1): the gradient is soft-target cross entropy's, (q - p) / N, and
    # the loss is that cross entropy less the teacher's entropy, which the student cannot change.
    rng = np.random.default_rng(seed)
    s, t = rng.standard_normal((batch, classes)) * 2, rng.standard_normal((batch, classes)) * 2
    s, t = s.astype(np.float32), t.astype(np.float32)
    q, p = softmax64(s), softmax64(t)
    cross_entropy = -(p * np.log(q)).sum() / batch
    teacher_entropy = -(p * np.log(p)).sum() / batch
    loss, bottom = run(distill_layer(1.0), s, t)
    assert loss == pytest.approx(cross_entropy - teacher_entropy, rel=1e-4, abs=1e-6)
    np.testing.assert_allclose(bottom[0].cpu_diff(), (q - p) / batch, atol=1e-6)


@given(st.integers(2, 5), st.floats(8, 64), st.integers(0, 2**31 - 1))
def test_t_squared_keeps_the_gradient_size_across_temperatures(classes, temperature, seed):
    # Without the T^2 factor the gradient would shrink like 1/T^2. With it, for large T it
    # tends to the logit-matching gradient ((s - mean s) - (t - mean t)) / (C N), the same for
    # every T (Hinton et al. sec. 2.1); for scores in [-2, 2] it is within 1.5 / T of it (the
    # second-order term of the softmax, about 1.1 / T at worst over C <= 5), and so T and 2T
    # give gradients of the same size.
    rng = np.random.default_rng(seed)
    s, t = rng.uniform(-2, 2, (2, classes)), rng.uniform(-2, 2, (2, classes))
    limit = ((s - s.mean(1, keepdims=True)) - (t - t.mean(1, keepdims=True))) / (classes * 2)
    for T in (temperature, 2 * temperature):
        _, bottom = run(distill_layer(T), s, t)
        np.testing.assert_allclose(bottom[0].cpu_diff(), limit, atol=1.5 / T / 2)


def test_scores_far_apart_stay_finite(mode):
    # The teacher's softened probabilities underflow to 0 in float32 (e^-100); the loss is
    # worked from log-probabilities, so those classes add 0 instead of 0 * -inf = NaN.
    s = np.array([[0, 0, 0]], dtype=np.float32)
    t = np.array([[400, 0, -400]], dtype=np.float32)
    loss, bottom = run(distill_layer(4.0), s, t)
    # p = (1, e^-100, e^-200) ~ (1, 0, 0): KL = log(1 / (1/3)) = log 3, times T^2 = 16.
    assert loss == pytest.approx(16 * math.log(3), rel=1e-5)
    np.testing.assert_allclose(bottom[0].cpu_diff(), [[4 * (1 / 3 - 1), 4 / 3, 4 / 3]], rtol=1e-5)


def test_class_axis_and_normalization(mode):
    # (N=2, C=4, inner=3), classes on axis 1: 6 positions. FULL and the default (VALID, every
    # position valid) divide by 6, BATCH_SIZE by the outer count 2 (as SoftmaxWithLoss), NONE by 1.
    rng = np.random.default_rng(8)
    s, t = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 4, 3))
    q, p = softmax64(s / 2, axis=1), softmax64(t / 2, axis=1)
    total = 4 * (p * (np.log(p) - np.log(q))).sum()
    for loss_param, divisor in [({}, 6), ({"normalization": "FULL"}, 6), ({"normalization": "BATCH_SIZE"}, 2),
                                ({"normalization": "NONE"}, 1), ({"normalize": False}, 2)]:
        loss, bottom = run(distill_layer(2.0, **loss_param), s, t)
        assert loss == pytest.approx(total / divisor, rel=1e-5), loss_param
        np.testing.assert_allclose(bottom[0].cpu_diff(), 2 * (q - p) / divisor, atol=1e-6)


@st.composite
def distill_cases(draw):
    n, c, h = draw(st.integers(1, 3)), draw(st.integers(2, 4)), draw(st.integers(1, 2))
    axis = draw(st.sampled_from([1, -1]))
    shape = (n, c, h) if axis == 1 else (n, h, c)
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    temperature = draw(st.sampled_from([0.5, 1.0, 2.0, 5.0]))
    param = {"normalization": draw(st.sampled_from(["FULL", "VALID", "BATCH_SIZE", "NONE"]))}
    return temperature, axis, param, blob_from(rng.standard_normal(shape) * 2), \
        blob_from(rng.standard_normal(shape) * 2)


@given(distill_cases())
def test_gradient(mode, case):
    temperature, axis, param, student, teacher = case
    checker = GradientChecker(1e-2, 1e-2, 1701)
    checker.check_gradient_exhaustive(distill_layer(temperature, axis, **param), [student, teacher],
                                      [Blob()], check_bottom=0)


# ---- the OpenCL twin
@given(st.lists(st.integers(1, 3), min_size=1, max_size=3), st.integers(1, 3), st.integers(2, 6),
       st.sampled_from([0.25, 1.0, 3.0, 20.0]),
       st.sampled_from(["FULL", "VALID", "BATCH_SIZE", "NONE"]), st.floats(0.5, 50),
       st.integers(0, 2**31 - 1))
def test_engines_agree(gpu_only, other_dims, axis, channels, temperature, normalization, spread, seed):
    # Scores from gentle to far apart (`spread` up to 50 at T = 0.25 underflows most of
    # the softened probabilities); the top diff compare_engines draws is the loss weight.
    axis = min(axis, len(other_dims))
    shape = tuple(other_dims[:axis]) + (channels,) + tuple(other_dims[axis:])
    rng = np.random.default_rng(seed)
    student, teacher = rng.standard_normal(shape) * spread, rng.standard_normal(shape) * spread
    param = layer_param("DistillationLoss", distillation_param={"temperature": temperature, "axis": axis},
                        loss_param={"normalization": normalization})
    compare_engines(param, [student, teacher], propagate_down=[True, False], rtol=2e-4, atol=1e-4)


# ---- bad input
@pytest.mark.parametrize("temperature", [0.0, -1.0, "NaN", "Infinity"])  # JSON spellings
def test_temperature_must_be_positive(mode, temperature):
    with pytest.raises(MinicaffeError, match="temperature must be a positive number"):
        run(distill_layer(temperature), np.zeros((2, 3)), np.zeros((2, 3)))


def test_shapes_must_match(mode):
    with pytest.raises(MinicaffeError, match=r"student scores .* of shape \(2, 3\) and teacher "
                                             r"scores .* of shape \(2, 4\) must have the same shape"):
        run(distill_layer(), np.zeros((2, 3)), np.zeros((2, 4)))


def test_axis_out_of_range_is_named(mode):
    with pytest.raises(MinicaffeError, match="DistillationLoss layer 'distillationloss'.*axis"):
        run(distill_layer(axis=3), np.zeros((2, 3)), np.zeros((2, 3)))


def test_ignore_label_is_refused(mode):
    with pytest.raises(MinicaffeError, match="ignore_label has no meaning"):
        run(distill_layer(ignore_label=0), np.zeros((2, 3)), np.zeros((2, 3)))


def test_cannot_backpropagate_to_the_teacher(mode):
    layer = distill_layer()
    bottom, top = [blob_from(np.zeros((2, 3))), blob_from(np.ones((2, 3)))], [Blob()]
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    assert not layer.allow_force_backward(1)  # force_backward never reaches the teacher
    with pytest.raises(MinicaffeError, match="cannot backpropagate to the teacher's scores.*lr_mult: 0"):
        layer.backward(top, [True, True], bottom)
