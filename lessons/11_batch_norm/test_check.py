"""Lesson 11 check: BatchNorm against minicaffe's BatchNormLayer in both phases, and its
gradient against finite differences."""
import numpy as np
import pytest

from minicaffe.blob import Blob
from minicaffe.layer import create_layer
from minicaffe.proto import caffe_pb2

pytestmark = pytest.mark.lesson11

SHAPES = [(2, 3, 4, 5), (1, 2, 3, 3), (4, 1, 1, 1), (3, 4, 2, 1)]


def minicaffe_batch_norm(x, phase, stats=None, fraction=0.999, eps=1e-5, dy=None):
    """Run minicaffe's layer once; returns (y, [mean_sum, var_sum, count], dx)."""
    param = caffe_pb2.LayerParameter(name="bn", type="BatchNorm", phase=phase)
    param.batch_norm_param.moving_average_fraction = fraction
    param.batch_norm_param.eps = eps
    layer = create_layer(param)
    bottom, top = [Blob(x.shape)], [Blob()]
    layer.setup(bottom, top)
    bottom[0].data = x
    if stats is not None:
        for blob, value in zip(layer.blobs, stats):
            blob.data[...] = value
    layer.forward(bottom, top)
    y = top[0].data.copy()
    stats = [blob.data.copy() for blob in layer.blobs]
    dx = None
    if dy is not None:
        top[0].diff = dy
        layer.backward(top, [True], bottom)
        dx = bottom[0].diff.copy()
    return y, stats, dx


def test_known_answer(lesson):
    # One channel holding 1, 2, 3, 4: mean 2.5, biased variance 5/4, unbiased 5/3.
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 2, 2)
    y, mean_sum, var_sum, count = lesson.batch_norm_train(x, np.zeros(1), np.zeros(1), 0.0,
                                                          fraction=0.5, eps=0.0)
    np.testing.assert_allclose(y.ravel(), np.array([-1.5, -0.5, 0.5, 1.5]) / np.sqrt(1.25), rtol=1e-6)
    np.testing.assert_allclose(mean_sum, [2.5])
    np.testing.assert_allclose(var_sum, [5 / 3])
    assert count == pytest.approx(1.0)
    # A second batch, all 6: the sums decay by 0.5 first. Then the test phase divides by
    # the count 1.5: mean (1.25 + 6) / 1.5, variance (5/6 + 0) / 1.5.
    _, mean_sum, var_sum, count = lesson.batch_norm_train(np.full((1, 1, 2, 2), 6.0), mean_sum,
                                                          var_sum, count, fraction=0.5)
    assert count == pytest.approx(1.5)
    y = lesson.batch_norm_test(np.array([[[[8.0]]]]), mean_sum, var_sum, count, eps=0.0)
    mean, var = 7.25 / 1.5, (5 / 6) / 1.5
    np.testing.assert_allclose(y.ravel(), [(8.0 - mean) / np.sqrt(var)], rtol=1e-6)


def test_before_training_the_statistics_are_zero(lesson):
    x = np.array([[[[2.0]], [[-3.0]]]])
    y = lesson.batch_norm_test(x, np.array([5.0, 5.0]), np.array([9.0, 9.0]), 0.0, eps=1.0)
    np.testing.assert_allclose(y, x)  # count 0: mean 0, variance 0, and eps = 1


@pytest.mark.parametrize("shape", SHAPES)
def test_train_matches_minicaffe(lesson, shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.normal(1.0, 2.0, shape).astype(np.float32)
    c = shape[1]
    start = [rng.uniform(0, 1, c), rng.uniform(1, 2, c), np.array([rng.uniform(1, 3)])]
    y_ref, stats_ref, _ = minicaffe_batch_norm(x, caffe_pb2.TRAIN, start, fraction=0.9)
    y, mean_sum, var_sum, count = lesson.batch_norm_train(x.astype(np.float64), start[0], start[1],
                                                          float(start[2][0]), fraction=0.9)
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4, err_msg="y")
    np.testing.assert_allclose(mean_sum, stats_ref[0], rtol=1e-4, atol=1e-5, err_msg="mean sum")
    np.testing.assert_allclose(var_sum, stats_ref[1], rtol=1e-4, atol=1e-5, err_msg="variance sum")
    assert count == pytest.approx(float(stats_ref[2][0]), rel=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_test_phase_matches_minicaffe(lesson, shape):
    rng = np.random.default_rng(7 + sum(shape))
    x = rng.normal(0.0, 3.0, shape).astype(np.float32)
    c = shape[1]
    stats = [rng.normal(0, 2, c), rng.uniform(1, 5, c), np.array([2.5])]
    y_ref, _, _ = minicaffe_batch_norm(x, caffe_pb2.TEST, stats)
    y = lesson.batch_norm_test(x.astype(np.float64), stats[0], stats[1], 2.5)
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", SHAPES[:3])
def test_backward_matches_minicaffe_and_finite_differences(lesson, shape):
    rng = np.random.default_rng(11)
    x = rng.normal(0.0, 1.0, shape)
    dy = rng.normal(0.0, 1.0, shape)
    eps = 1e-5
    y, _, _, _ = lesson.batch_norm_train(x, np.zeros(shape[1]), np.zeros(shape[1]), 0.0, eps=eps)
    var = x.var(axis=(0, 2, 3))
    dx = lesson.batch_norm_backward(dy, y, var, eps=eps)
    _, _, dx_ref = minicaffe_batch_norm(x.astype(np.float32), caffe_pb2.TRAIN, eps=eps,
                                        dy=dy.astype(np.float32))
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-3, atol=1e-4, err_msg="against minicaffe")

    def objective(xv):  # E = sum(dy * y): its gradient is the backward of dy
        out, _, _, _ = lesson.batch_norm_train(xv, np.zeros(shape[1]), np.zeros(shape[1]), 0.0, eps=eps)
        return float((dy * out).sum())
    h, numeric = 1e-5, np.zeros_like(x)
    for i in range(x.size):
        step = np.zeros_like(x)
        step.flat[i] = h
        numeric.flat[i] = (objective(x + step) - objective(x - step)) / (2 * h)
    np.testing.assert_allclose(dx, numeric, rtol=1e-4, atol=1e-6, err_msg="against finite differences")
