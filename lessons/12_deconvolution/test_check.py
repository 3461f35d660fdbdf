"""Lesson 12 check: col2im against minicaffe's, deconvolution against DeconvolutionLayer,
and the adjoint identity <conv(x), y> = <x, deconv(y)> with minicaffe's ConvolutionLayer."""
import numpy as np
import pytest

from minicaffe import im2col as mc_im2col
from minicaffe.blob import Blob
from minicaffe.layer import create_layer
from minicaffe.proto import caffe_pb2

pytestmark = pytest.mark.lesson12

# (C_in, C_out, H, W, kernel, pad, stride): stamps apart, touching, overlapping; padding.
CASES = [(1, 1, 2, 2, 2, 0, 2), (2, 3, 3, 3, 3, 0, 1), (3, 2, 4, 3, 3, 1, 2), (2, 2, 3, 4, 4, 1, 2),
         (1, 4, 2, 3, 1, 0, 1), (3, 1, 3, 3, 5, 2, 3)]


def run_layer(kind, x, w, b, pad, stride):
    param = caffe_pb2.LayerParameter(name="layer", type=kind)
    cp = param.convolution_param
    num_output = w.shape[1] if kind == "Deconvolution" else w.shape[0]
    cp.num_output, cp.kernel_size[:], cp.pad[:], cp.stride[:] = num_output, [w.shape[2]], [pad], [stride]
    cp.bias_term = b is not None
    layer = create_layer(param)
    bottom, top = [Blob(x.shape)], [Blob()]
    layer.setup(bottom, top)
    bottom[0].data = x
    layer.blobs[0].data = w
    if b is not None:
        layer.blobs[1].data = b
    layer.forward(bottom, top)
    return top[0].data.copy()


def test_a_pixel_stamps_the_kernel(lesson):
    kernel = np.arange(9.0).reshape(1, 1, 3, 3)
    y = lesson.deconv_forward(np.array([[[[2.0]]]]), kernel, np.zeros(1), 0, 1)
    np.testing.assert_array_equal(y[0, 0], 2 * kernel[0, 0])


def test_overlapping_stamps_add(lesson):
    # Two pixels of 1, a 3x3 kernel of ones, stride 2: stamps at columns 0-2 and 2-4.
    y = lesson.deconv_forward(np.ones((1, 1, 1, 2)), np.ones((1, 1, 3, 3)), np.zeros(1), 0, 2)
    np.testing.assert_array_equal(y[0, 0], [[1, 1, 2, 1, 1]] * 3)


def test_padding_crops_the_output(lesson):
    # pad 1 removes one pixel from each border: 3x3 -> 1x1, the kernel's centre.
    kernel = np.arange(9.0).reshape(1, 1, 3, 3)
    y = lesson.deconv_forward(np.ones((1, 1, 1, 1)), kernel, np.array([0.5]), 1, 1)
    np.testing.assert_array_equal(y, [[[[4.5]]]])


@pytest.mark.parametrize("c_in,c_out,h,w,k,p,s", CASES)
def test_col2im_matches_minicaffe(lesson, c_in, c_out, h, w, k, p, s):
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    col = np.random.default_rng(3).normal(size=(c_in * k * k, oh * ow)).astype(np.float32)
    expected = mc_im2col.col2im(col[None], (1, c_in, h, w), (k, k), (p, p), (s, s), (1, 1))[0]
    np.testing.assert_allclose(lesson.col2im(col, c_in, h, w, k, p, s), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("c_in,c_out,h,w,k,p,s", CASES)
def test_deconv_matches_minicaffe(lesson, c_in, c_out, h, w, k, p, s):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, c_in, h, w)).astype(np.float32)
    weights = rng.normal(size=(c_in, c_out, k, k)).astype(np.float32)
    bias = rng.normal(size=c_out).astype(np.float32)
    np.testing.assert_allclose(lesson.deconv_forward(x, weights, bias, p, s),
                               run_layer("Deconvolution", x, weights, bias, p, s), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("c_in,c_out,h,w,k,p,s", CASES)
def test_deconvolution_is_the_adjoint_of_convolution(lesson, c_in, c_out, h, w, k, p, s):
    # A convolution from C_out channels to C_in maps the deconvolution's output back to
    # its input's shape; with the same weight blob, <conv(z), x> = <z, deconv(x)>.
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, c_in, h, w))
    weights = rng.normal(size=(c_in, c_out, k, k))
    y = lesson.deconv_forward(x, weights, np.zeros(c_out), p, s)
    z = rng.normal(size=y.shape)
    conv_z = run_layer("Convolution", z.astype(np.float32), weights.astype(np.float32), None, p, s)
    assert conv_z.shape == x.shape
    np.testing.assert_allclose(float((y * z).sum()), float((conv_z * x).sum()), rtol=1e-4)
