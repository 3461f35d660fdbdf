"""Lesson 05 check: max pooling against minicaffe's PoolingLayer (output, mask, gradient)."""
import numpy as np
import pytest

from minicaffe.blob import Blob
from minicaffe.layer import create_layer
from minicaffe.proto import caffe_pb2

pytestmark = pytest.mark.lesson05

# (N, C, H, W, kernel, stride): exact fits, CEIL overhangs, overlapping windows.
CASES = [(2, 3, 4, 4, 2, 2), (1, 2, 6, 6, 3, 2), (2, 2, 7, 5, 3, 2), (1, 1, 5, 5, 2, 1),
         (1, 2, 5, 7, 3, 3), (2, 1, 8, 8, 3, 3), (1, 1, 3, 3, 3, 1)]


def minicaffe_max_pool(x, kernel, stride, dy):
    param = caffe_pb2.LayerParameter(name="pool", type="Pooling")
    param.pooling_param.pool = caffe_pb2.PoolingParameter.MAX
    param.pooling_param.kernel_size, param.pooling_param.stride = kernel, stride
    layer = create_layer(param)
    bottom, top = [Blob(x.shape)], [Blob(), Blob()]  # the second top is the mask
    layer.setup(bottom, top)
    bottom[0].data = x
    layer.forward(bottom, top)
    y, mask = top[0].data.copy(), top[1].data.astype(np.int64)
    dx = None
    if dy is not None:
        top[0].diff = dy
        layer.backward(top, [True], bottom)
        dx = bottom[0].diff.copy()
    return y, mask, dx


def test_known_answer(lesson):
    x = np.array([[[[1, 3, 2, 0], [4, 2, 9, 1], [0, 0, 1, 1], [5, 0, 1, 7]]]], dtype=np.float32)
    y, mask = lesson.max_pool_forward(x, 2, 2)
    np.testing.assert_array_equal(y, [[[[4, 9], [5, 7]]]])
    np.testing.assert_array_equal(mask, [[[[4, 6], [12, 15]]]])
    dx = lesson.max_pool_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), mask, x.shape)
    expected = np.zeros((4, 4))
    expected.flat[[4, 6, 12, 15]] = [1, 2, 3, 4]
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_ceil_output_size(lesson):
    y, _ = lesson.max_pool_forward(np.zeros((1, 1, 6, 6), dtype=np.float32), 3, 2)
    assert y.shape == (1, 1, 3, 3), "Caffe rounds the output size up"


def test_ties_go_to_the_first_pixel(lesson):
    _, mask = lesson.max_pool_forward(np.ones((1, 1, 2, 2), dtype=np.float32), 2, 2)
    assert int(mask.ravel()[0]) == 0


@pytest.mark.parametrize("n,c,h,w,k,s", CASES)
def test_matches_minicaffe(lesson, n, c, h, w, k, s):
    rng = np.random.default_rng(0)
    x = rng.permutation(n * c * h * w).reshape(n, c, h, w).astype(np.float32)  # no ties
    y_ref, mask_ref, _ = minicaffe_max_pool(x, k, s, None)
    dy = rng.normal(size=y_ref.shape).astype(np.float32)
    _, _, dx_ref = minicaffe_max_pool(x, k, s, dy)
    y, mask = lesson.max_pool_forward(x, k, s)
    np.testing.assert_array_equal(y, y_ref, err_msg="y")
    np.testing.assert_array_equal(mask, mask_ref, err_msg="mask")
    np.testing.assert_allclose(lesson.max_pool_backward(dy, mask, x.shape), dx_ref,
                               rtol=1e-6, atol=1e-6, err_msg="dx")
