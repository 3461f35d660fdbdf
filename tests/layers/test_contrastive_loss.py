"""ContrastiveLoss: known losses and gradients (current and legacy forms, margin, how the
similarity is read), gradients (Caffe's checker settings), the OpenCL twin against numpy,
bad input."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.syncedmem import SyncedMemory
from minicaffe.testing import GradientChecker
from minicaffe.testing.engines import compare_engines
from tests.strategies import blob_from, layer_param


def contrastive(**param):
    return create_layer(layer_param("ContrastiveLoss", contrastive_loss_param=param))


def run(layer, a, b, y, loss_weight=None):
    bottom, top = [blob_from(a), blob_from(b), blob_from(y)], [Blob()]
    layer.setup(bottom, top)
    if loss_weight is not None:
        top[0].diff = loss_weight
    loss = layer.forward(bottom, top)
    layer.backward(top, [True, True, False], bottom)
    return loss, bottom


# Pair 0 similar with a - b = (1, 0): d^2 = 1. Pair 1 dissimilar with a - b = (-0.3, -0.4):
# d = 0.5, inside the margin 1. Pair 2 dissimilar with d = 5, outside it. N = 3.
A = [[1, 0], [0, 0], [0, 0]]
B = [[0, 0], [0.3, 0.4], [3, 4]]
Y = [1, 0, 0]


def test_known_loss_and_gradients(mode):
    # E = (1 + (1 - 0.5)^2 + 0) / 2N = 1.25 / 6. dE/da: pair 0 (a - b) / N, pair 1
    # -(m - d) / (d + 1e-4) (a - b) / N, pair 2 nothing; dE/db = -dE/da.
    loss, bottom = run(contrastive(), A, B, Y)
    assert loss == pytest.approx(1.25 / 6, rel=1e-6)
    pull = 0.5 / 0.5001
    expected = np.array([[1, 0], [0.3 * pull, 0.4 * pull], [0, 0]]) / 3
    np.testing.assert_allclose(bottom[0].cpu_diff(), expected, rtol=1e-6)
    np.testing.assert_allclose(bottom[1].cpu_diff(), -expected, rtol=1e-6)
    np.testing.assert_array_equal(bottom[2].cpu_diff(), 0)  # the similarity gets nothing


def test_legacy_version_thresholds_the_squared_distance(mode):
    # E = (1 + max(1 - 0.25, 0) + max(1 - 25, 0)) / 6; a dissimilar pair inside the
    # margin pushes with -(a - b) / N.
    loss, bottom = run(contrastive(legacy_version=True), A, B, Y)
    assert loss == pytest.approx(1.75 / 6, rel=1e-6)
    expected = np.array([[1, 0], [0.3, 0.4], [0, 0]]) / 3
    np.testing.assert_allclose(bottom[0].cpu_diff(), expected, rtol=1e-6)
    np.testing.assert_allclose(bottom[1].cpu_diff(), -expected, rtol=1e-6)


def test_margin(mode):
    # Margin 2: pair 1 contributes (2 - 0.5)^2 = 2.25; pair 2 (d = 5) still nothing.
    loss, _ = run(contrastive(margin=2), A, B, Y)
    assert loss == pytest.approx(3.25 / 6, rel=1e-6)


def test_similarity_is_truncated_to_int(mode):
    # As Caffe's static_cast<int>: 2 and -1 mean similar, 0.7 means dissimilar.
    plain, plain_bottom = run(contrastive(), A, B, Y)
    odd, odd_bottom = run(contrastive(), A, B, [2, 0.7, 0])
    assert odd == pytest.approx(plain)
    np.testing.assert_allclose(odd_bottom[0].cpu_diff(), plain_bottom[0].cpu_diff())
    assert run(contrastive(), A, B, [-1, 0, 0])[0] == pytest.approx(plain)


def test_loss_weight_scales_gradients(mode):
    _, plain = run(contrastive(), A, B, Y)
    _, weighted = run(contrastive(), A, B, Y, loss_weight=3.0)
    np.testing.assert_allclose(weighted[0].cpu_diff(), 3 * plain[0].cpu_diff(), rtol=1e-6)


def test_four_axis_features(mode):
    loss, bottom = run(contrastive(), np.reshape(A, (3, 2, 1, 1)), np.reshape(B, (3, 2, 1, 1)),
                       np.reshape(Y, (3, 1, 1, 1)))
    assert loss == pytest.approx(1.25 / 6, rel=1e-6)
    assert bottom[0].cpu_diff().shape == (3, 2, 1, 1)


@st.composite
def cases(draw, legacy, margin=1.0):
    """Features uniform in [-1, 1] (Caffe's test: distances near the margin, both sides),
    random similarities; no dissimilar pair within a finite-difference step of a kink
    (d = 0, and d^2 = margin in the legacy form), where the loss has no derivative."""
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    a, b = rng.uniform(-1, 1, (n, c)), rng.uniform(-1, 1, (n, c))
    y = rng.integers(0, 2, n).astype(np.float32)
    dist = np.sqrt(((a - b) ** 2).sum(axis=1))
    near_kink = (dist < 0.05) | (legacy & (np.abs(dist**2 - margin) < 0.05))
    assume(not np.any(near_kink & (y == 0)))
    return a, b, y


@given(st.data(), st.booleans())
def test_gradient(mode, data, legacy):
    # Caffe's settings (1e-2, 1e-2), for a and for b; never for the similarity labels.
    a, b, y = data.draw(cases(legacy))
    checker = GradientChecker(1e-2, 1e-2, 1701)
    for check_bottom in (0, 1):
        checker.check_gradient_exhaustive(contrastive(legacy_version=legacy),
                                          [blob_from(a), blob_from(b), blob_from(y)], [Blob()],
                                          check_bottom=check_bottom)


@given(st.data(), st.booleans(), st.sampled_from([1.0, 0.5, 2.0]),
       st.lists(st.booleans(), min_size=2, max_size=2), st.floats(-2, 2))
def test_engines_agree(gpu_only, data, legacy, margin, propagate_down, loss_weight):
    a, b, y = data.draw(cases(legacy, margin))
    param = layer_param("ContrastiveLoss",
                        contrastive_loss_param={"legacy_version": legacy, "margin": margin})
    compare_engines(param, [a, b, y], top_diffs=[np.float32(loss_weight)],
                    propagate_down=propagate_down + [False])


def test_data_stays_on_the_device(gpu_only):
    layer = contrastive()
    bottom, top = [blob_from(A), blob_from(B), blob_from(Y)], [Blob()]
    layer.setup(bottom, top)
    for blob in bottom:
        blob.mutable_gpu_data()
    for _ in range(2):  # the loss weight goes to the device once, in the first backward
        before = dict(SyncedMemory.transfers)
        assert layer.forward(bottom, top) == pytest.approx(1.25 / 6, rel=1e-6)
        layer.backward(top, [True, True, False], bottom)
    assert SyncedMemory.transfers == {**before, "to_cpu": before["to_cpu"] + 1}


def test_features_may_be_forced_to_backpropagate_but_not_labels(mode):
    layer = contrastive()
    assert layer.allow_force_backward(0) and layer.allow_force_backward(1)
    assert not layer.allow_force_backward(2)


# ---- bad input
@pytest.mark.parametrize("a_shape, b_shape, y_shape, message", [
    ((3, 2, 2), (3, 2, 2), (3,), "features must be \\(N, C\\) or \\(N, C, 1, 1\\)"),
    ((3, 2), (3, 3), (3,), "same number of channels"),
    ((3, 2), (3, 2), (3, 2), "one similarity label per pair \\(3\\)"),
    ((3, 2), (3, 2), (2,), "one similarity label per pair"),
    ((3, 2), (2, 2), (3,), "same first"),
])
def test_bad_shapes(mode, a_shape, b_shape, y_shape, message):
    layer = create_layer(layer_param("ContrastiveLoss", name="siamese"))
    bottom = [blob_from(np.zeros(s)) for s in (a_shape, b_shape, y_shape)]
    with pytest.raises(MinicaffeError, match=f"ContrastiveLoss layer 'siamese'.*{message}"):
        layer.setup(bottom, [Blob()])


def test_needs_three_bottoms(mode):
    with pytest.raises(MinicaffeError, match="ContrastiveLoss layer .* takes exactly 3 bottom"):
        contrastive().setup([blob_from(A), blob_from(B)], [Blob()])
