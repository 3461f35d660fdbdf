"""Lesson 06 check: softmax loss against SoftmaxWithLossLayer, stability, finite differences."""
import numpy as np
import pytest

from minicaffe.blob import Blob
from minicaffe.layer import create_layer
from minicaffe.proto import caffe_pb2

pytestmark = pytest.mark.lesson06


def minicaffe_softmax_loss(x, labels):
    param = caffe_pb2.LayerParameter(name="loss", type="SoftmaxWithLoss")
    layer = create_layer(param)
    bottom, top = [Blob(x.shape), Blob(labels.shape)], [Blob()]
    layer.setup(bottom, top)  # loss weight 1: top diff = 1
    bottom[0].data, bottom[1].data = x, labels
    layer.forward(bottom, top)
    layer.backward(top, [True, False], bottom)
    return float(top[0].data), bottom[0].diff.copy()


def test_known_answer(lesson):
    labels = np.array([0, 3])
    loss, prob = lesson.softmax_loss_forward(np.zeros((2, 4)), labels)
    assert loss == pytest.approx(np.log(4))
    np.testing.assert_allclose(prob, np.full((2, 4), 0.25))
    dx = lesson.softmax_loss_backward(prob, labels)
    np.testing.assert_allclose(dx, [[-0.375, 0.125, 0.125, 0.125], [0.125, 0.125, 0.125, -0.375]])


@pytest.mark.parametrize("n,c", [(1, 2), (5, 3), (8, 10), (3, 1)])
def test_matches_minicaffe(lesson, n, c):
    rng = np.random.default_rng(n * 10 + c)
    x = (3 * rng.normal(size=(n, c))).astype(np.float32)
    labels = rng.integers(0, c, size=n)
    loss_ref, dx_ref = minicaffe_softmax_loss(x, labels.astype(np.float32))
    loss, prob = lesson.softmax_loss_forward(x, labels)
    assert float(loss) == pytest.approx(loss_ref, rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(np.sum(prob, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(lesson.softmax_loss_backward(prob, labels), dx_ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("offset", [1000.0, -1000.0, 1e4])
def test_large_scores_are_stable(lesson, offset):
    x = np.array([[2.0, 1.0, -1.0], [0.0, 3.0, 0.5]])
    labels = np.array([1, 1])
    with np.errstate(all="ignore"):  # the check looks at the values, not at warnings
        loss, prob = lesson.softmax_loss_forward(x + offset, labels)
        loss_ref, prob_ref = lesson.softmax_loss_forward(x, labels)
    assert np.isfinite(loss) and np.all(np.isfinite(prob)), "overflow: subtract each row's max"
    assert float(loss) == pytest.approx(float(loss_ref), rel=1e-6)
    np.testing.assert_allclose(prob, prob_ref, rtol=1e-6)


def test_confident_wrong_answer_is_finite(lesson):
    loss, _ = lesson.softmax_loss_forward(np.array([[0.0, 200.0]]), np.array([0]))
    assert np.isfinite(loss) and loss > 80, "clamp p[label] at FLT_MIN before the log"


def test_finite_differences(lesson):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4, 5))
    labels = rng.integers(0, 5, size=4)
    _, prob = lesson.softmax_loss_forward(x, labels)
    dx = lesson.softmax_loss_backward(prob, labels)
    h, numeric = 1e-6, np.zeros_like(x)
    for i in np.ndindex(x.shape):
        keep = x[i]
        x[i] = keep + h
        plus = lesson.softmax_loss_forward(x, labels)[0]
        x[i] = keep - h
        minus = lesson.softmax_loss_forward(x, labels)[0]
        x[i] = keep
        numeric[i] = (plus - minus) / (2 * h)
    np.testing.assert_allclose(dx, numeric, rtol=1e-5, atol=1e-8)
