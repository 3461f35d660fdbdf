"""im2col / col2im: known columns, a plain-loop reference, adjointness, bad sizes.

These are host-side numpy functions with no engine to choose, so the tests do not take
the per-engine `mode` fixture; the OpenCL twin is exercised through the Convolution tests.
"""
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicaffe.common import MinicaffeError
from minicaffe.im2col import col2im, conv_out_shape, im2col


@st.composite
def geometries(draw, max_axes=3):
    """(x_shape, kernel, pad, stride, dilation) for which the output is non-empty."""
    d = draw(st.integers(1, max_axes))
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(d))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(d))
    pad = tuple(draw(st.integers(0, 2)) for _ in range(d))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(d))
    spatial = tuple(draw(st.integers(max(1, r * (k - 1) + 1 - 2 * p), 6))
                    for k, r, p in zip(kernel, dilation, pad))
    return (n, c, *spatial), kernel, pad, stride, dilation


def reference_im2col(x, kernel, pad, stride, dilation):
    """Caffe's layout, one entry at a time: col[n, (c, i), o] = x_pad[n, c, o*s + i*r]."""
    n, c, *spatial = x.shape
    out = conv_out_shape(spatial, kernel, pad, stride, dilation)
    col = np.zeros((n, c, *kernel, *out), dtype=x.dtype)
    for b, ch in itertools.product(range(n), range(c)):
        for i in itertools.product(*(range(k) for k in kernel)):
            for o in itertools.product(*(range(v) for v in out)):
                src = [oo * s + ii * r - p for oo, s, ii, r, p in zip(o, stride, i, dilation, pad)]
                if all(0 <= v < size for v, size in zip(src, spatial)):
                    col[(b, ch, *i, *o)] = x[(b, ch, *src)]
    return col.reshape(n, c * int(np.prod(kernel)), int(np.prod(out)))


def to_batch_last(col):
    """(N, rows, cols) -> (rows, cols * N) with the image index fastest."""
    return np.ascontiguousarray(col.transpose(1, 2, 0)).reshape(col.shape[1], -1)


def random(shape, seed):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def test_known_columns():
    # One 3x3 channel, 2x2 kernel, stride 1: each column is one 2x2 window, row-major.
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    col = im2col(x, (2, 2), (0, 0), (1, 1), (1, 1))
    expected = [[1, 2, 4, 5],    # kernel offset (0, 0) of windows (0,0) (0,1) (1,0) (1,1)
                [2, 3, 5, 6],    # (0, 1)
                [4, 5, 7, 8],    # (1, 0)
                [5, 6, 8, 9]]    # (1, 1)
    np.testing.assert_array_equal(col[0], expected)
    # Pad 1, stride 2: windows start at -1 and 1; padding reads as zero.
    col = im2col(x, (2, 2), (1, 1), (2, 2), (1, 1))
    np.testing.assert_array_equal(col[0], [[0, 0, 0, 5], [0, 0, 4, 6],
                                           [0, 2, 0, 8], [1, 3, 7, 9]])
    # Dilation 2: the single window takes the four corners.
    np.testing.assert_array_equal(im2col(x, (2, 2), (0, 0), (1, 1), (2, 2))[0], [[1], [3], [7], [9]])


def test_known_col2im_counts_overlaps():
    # col2im of all-ones columns counts how many windows cover each pixel.
    ones = np.ones((1, 4, 4), dtype=np.float32)
    counts = col2im(ones, (1, 1, 3, 3), (2, 2), (0, 0), (1, 1), (1, 1))
    np.testing.assert_array_equal(counts[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


@given(geometry=geometries(), seed=st.integers(0, 2**31 - 1), batch_last=st.booleans())
def test_matches_reference(geometry, seed, batch_last):
    shape, kernel, pad, stride, dilation = geometry
    x = random(shape, seed)
    expected = reference_im2col(x, kernel, pad, stride, dilation)
    if batch_last:
        expected = to_batch_last(expected)
    col = im2col(x, kernel, pad, stride, dilation, batch_last=batch_last)
    assert col.dtype == np.float32
    np.testing.assert_array_equal(col, expected)


@given(geometry=geometries(), seed=st.integers(0, 2**31 - 1), batch_last=st.booleans())
def test_col2im_is_the_adjoint(geometry, seed, batch_last):
    # <col2im(y), x> == <y, im2col(x)> for every x and y: col2im is im2col transposed.
    shape, kernel, pad, stride, dilation = geometry
    x = random(shape, seed)
    col = im2col(x, kernel, pad, stride, dilation, batch_last=batch_last)
    y = random(col.shape, seed + 1)
    back = col2im(y, shape, kernel, pad, stride, dilation, batch_last=batch_last)
    assert back.shape == shape and back.dtype == np.float32
    lhs = np.sum(back.astype(np.float64) * x)
    rhs = np.sum(y.astype(np.float64) * col)
    assert lhs == pytest.approx(rhs, rel=1e-5, abs=1e-5)


@given(geometry=geometries(max_axes=2), seed=st.integers(0, 2**31 - 1))
def test_out_buffers_are_filled(geometry, seed):
    shape, kernel, pad, stride, dilation = geometry
    x = random(shape, seed)
    expected = im2col(x, kernel, pad, stride, dilation)
    buffer = np.full(expected.size + 3, np.nan, dtype=np.float32)
    col = im2col(x, kernel, pad, stride, dilation, out=buffer)
    np.testing.assert_array_equal(col, expected)
    assert np.shares_memory(col, buffer)
    dx = np.full(shape, np.nan, dtype=np.float32)
    result = col2im(col, shape, kernel, pad, stride, dilation, out=dx)
    assert result is dx
    np.testing.assert_array_equal(dx, col2im(col, shape, kernel, pad, stride, dilation))


def test_1x1_needs_no_copy():
    x = random((2, 3, 4, 5), 0)
    col = im2col(x, (1, 1), (0, 0), (1, 1), (1, 1))
    assert np.shares_memory(col, x)
    np.testing.assert_array_equal(col, x.reshape(2, 3, 20))


def test_kernel_larger_than_padded_input():
    x = np.zeros((1, 1, 4, 4), dtype=np.float32)
    with pytest.raises(MinicaffeError, match="larger than the padded input"):
        im2col(x, (6, 3), (0, 0), (1, 1), (1, 1))
    with pytest.raises(MinicaffeError, match="dilation 3"):
        im2col(x, (3, 3), (1, 1), (1, 1), (1, 3))
    im2col(x, (6, 3), (1, 0), (1, 1), (1, 1))  # padding makes room: no error
