"""Lesson 02 check: the learner's InnerProduct against minicaffe's layer and finite differences."""
import numpy as np
import pytest

from minicaffe.blob import Blob
from minicaffe.layer import create_layer
from minicaffe.proto import caffe_pb2

pytestmark = pytest.mark.lesson02

# (M, K, N); the square ones (K == N) catch a transposed weight gradient.
SHAPES = [(1, 1, 1), (4, 3, 3), (5, 7, 2), (2, 6, 6), (3, 4, 9)]


def draw(m, k, n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(m, k)), rng.normal(size=(n, k)), rng.normal(size=n),
            rng.normal(size=(m, n)))


def minicaffe_inner_product(x, w, b, dy):
    """minicaffe's InnerProductLayer on the same numbers: (y, dx, dw, db)."""
    param = caffe_pb2.LayerParameter(name="ip", type="InnerProduct")
    param.inner_product_param.num_output = w.shape[0]
    layer = create_layer(param)
    bottom, top = [Blob(x.shape)], [Blob()]
    layer.setup(bottom, top)
    bottom[0].data, layer.blobs[0].data, layer.blobs[1].data = x, w, b
    layer.forward(bottom, top)
    top[0].diff = dy
    for blob in layer.blobs:
        blob.diff = 0  # parameter gradients accumulate: start from zero
    layer.backward(top, [True], bottom)
    return (top[0].data.copy(), bottom[0].diff.copy(), layer.blobs[0].diff.copy(),
            layer.blobs[1].diff.copy())


def test_known_answer(lesson):
    x = np.array([[1.0, 2.0]])
    w = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = np.array([0.0, 0.0, 1.0])
    np.testing.assert_allclose(lesson.inner_product_forward(x, w, b), [[1.0, 2.0, 4.0]])
    dx, dw, db = lesson.inner_product_backward(x, w, np.array([[1.0, 0.0, 2.0]]))
    np.testing.assert_allclose(dx, [[3.0, 2.0]])          # 1*w0 + 2*w2
    np.testing.assert_allclose(dw, [[1.0, 2.0], [0.0, 0.0], [2.0, 4.0]])
    np.testing.assert_allclose(db, [1.0, 0.0, 2.0])


@pytest.mark.parametrize("m,k,n", SHAPES)
def test_matches_minicaffe(lesson, m, k, n):
    x, w, b, dy = draw(m, k, n)
    y_ref, dx_ref, dw_ref, db_ref = minicaffe_inner_product(x, w, b, dy)
    np.testing.assert_allclose(lesson.inner_product_forward(x, w, b), y_ref, rtol=1e-4, atol=1e-5)
    dx, dw, db = lesson.inner_product_backward(x, w, dy)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-5, err_msg="dx")
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-4, atol=1e-5, err_msg="dw")
    np.testing.assert_allclose(np.ravel(db), db_ref, rtol=1e-4, atol=1e-5, err_msg="db")


def central_difference(f, a, h=1e-6):
    grad = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        keep = a[i]
        a[i] = keep + h
        plus = f()
        a[i] = keep - h
        minus = f()
        a[i] = keep
        grad[i] = (plus - minus) / (2 * h)
    return grad


@pytest.mark.parametrize("m,k,n", SHAPES[1:])
def test_finite_differences(lesson, m, k, n):
    # E = sum(dy * y) has dE/dy = dy: the backward pass must give E's gradients.
    x, w, b, dy = draw(m, k, n, seed=3)

    def energy():
        return float(np.sum(dy * lesson.inner_product_forward(x, w, b)))

    dx, dw, db = lesson.inner_product_backward(x, w, dy)
    np.testing.assert_allclose(dx, central_difference(energy, x), rtol=1e-5, atol=1e-6, err_msg="dx")
    np.testing.assert_allclose(dw, central_difference(energy, w), rtol=1e-5, atol=1e-6, err_msg="dw")
    np.testing.assert_allclose(np.ravel(db), central_difference(energy, b), rtol=1e-5, atol=1e-6,
                               err_msg="db")
