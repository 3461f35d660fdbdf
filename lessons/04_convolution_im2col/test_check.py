"""Lesson 04 check: im2col against minicaffe's, convolution against ConvolutionLayer."""
import numpy as np
import pytest

from minicaffe import im2col as mc_im2col
from minicaffe.blob import Blob
from minicaffe.layer import create_layer
from minicaffe.proto import caffe_pb2

pytestmark = pytest.mark.lesson04

# (C, H, W, kernel, pad, stride)
CASES = [(1, 3, 3, 2, 0, 1), (2, 5, 5, 3, 0, 1), (3, 6, 5, 3, 1, 2), (2, 7, 7, 3, 2, 3),
         (4, 4, 6, 1, 0, 1), (3, 5, 4, 2, 1, 1)]


def test_im2col_known_answer(lesson):
    col = lesson.im2col(np.arange(9.0).reshape(1, 3, 3), 2, 0, 1)
    np.testing.assert_array_equal(col, [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]])


def test_im2col_padding_known_answer(lesson):
    # One pixel, a 3x3 kernel and pad 1: the only column is the padded neighbourhood.
    col = lesson.im2col(np.array([[[5.0]]]), 3, 1, 1)
    np.testing.assert_array_equal(col.ravel(), [0, 0, 0, 0, 5, 0, 0, 0, 0])


@pytest.mark.parametrize("c,h,w,k,p,s", CASES)
def test_im2col_matches_minicaffe(lesson, c, h, w, k, p, s):
    x = np.random.default_rng(0).normal(size=(c, h, w)).astype(np.float32)
    expected = mc_im2col.im2col(x[None], (k, k), (p, p), (s, s), (1, 1))[0]
    np.testing.assert_array_equal(lesson.im2col(x, k, p, s), expected)


def minicaffe_conv(x, w, b, pad, stride):
    param = caffe_pb2.LayerParameter(name="conv", type="Convolution")
    cp = param.convolution_param
    cp.num_output, cp.kernel_size[:], cp.pad[:], cp.stride[:] = w.shape[0], [w.shape[2]], [pad], [stride]
    layer = create_layer(param)
    bottom, top = [Blob(x.shape)], [Blob()]
    layer.setup(bottom, top)
    bottom[0].data, layer.blobs[0].data, layer.blobs[1].data = x, w, b
    layer.forward(bottom, top)
    return top[0].data.copy()


@pytest.mark.parametrize("num_output", [1, 4])
@pytest.mark.parametrize("c,h,w,k,p,s", CASES)
def test_conv_matches_minicaffe(lesson, num_output, c, h, w, k, p, s):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, c, h, w)).astype(np.float32)
    weights = rng.normal(size=(num_output, c, k, k)).astype(np.float32)
    bias = rng.normal(size=num_output).astype(np.float32)
    np.testing.assert_allclose(lesson.conv_forward(x, weights, bias, p, s),
                               minicaffe_conv(x, weights, bias, p, s), rtol=1e-4, atol=1e-4)


def test_conv_known_answer(lesson):
    # x grows by one per column, so a [-1, 1] difference along the width is 1 everywhere.
    x = np.tile(np.arange(5.0), (5, 1))[None, None]
    w = np.array([[[[-1.0, 1.0], [0.0, 0.0]]]])
    y = lesson.conv_forward(x, w, np.array([0.5]), 0, 1)
    np.testing.assert_allclose(y, np.full((1, 1, 4, 4), 1.5))
