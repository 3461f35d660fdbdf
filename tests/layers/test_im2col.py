"""Im2col (the layer; tests/test_im2col.py tests the host functions): known answers by
hand and from a plain-loop reference, gradients (Caffe's checker: stepsize 1e-2,
threshold 1e-2), the OpenCL twin against numpy, bad input.
"""
import itertools

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
from tests.strategies import blob_from, layer_param


def layer(**fields):
    return create_layer(layer_param("Im2col", "cols", convolution_param=fields))


def run(im2col_layer, x, dy=None):
    bottom, top = blob_from(x), Blob()
    im2col_layer.setup([bottom], [top])
    im2col_layer.forward([bottom], [top])
    y = top.data.copy()
    if dy is None:
        return y, None
    top.diff = dy
    im2col_layer.backward([top], [True], [bottom])
    return y, bottom.diff.copy()


def reference(x, dy, kernel, pad, stride, dilation):
    """The top and the bottom diff by the definition, one value at a time
    (x: (N, C, *S), dy: the top's shape)."""
    n, c, *spatial = x.shape
    out = [(s + 2 * p - (r * (k - 1) + 1)) // st + 1
           for s, k, p, st, r in zip(spatial, kernel, pad, stride, dilation)]
    y, dx = np.zeros((n, c * int(np.prod(kernel)), *out)), np.zeros(x.shape)
    taps = list(itertools.product(*(range(k) for k in kernel)))
    for img, ch, (t, i), o in itertools.product(range(n), range(c), enumerate(taps),
                                                itertools.product(*(range(v) for v in out))):
        row = ch * len(taps) + t
        q = [oo * s + ii * r - p for oo, s, ii, r, p in zip(o, stride, i, dilation, pad)]
        if all(0 <= v < size for v, size in zip(q, spatial)):
            y[(img, row, *o)] = x[(img, ch, *q)]
            dx[(img, ch, *q)] += dy[(img, row, *o)]
    return y, dx


# ---- known answers
def test_known_answer_by_hand(mode):
    # x = [[1 2 3] [4 5 6] [7 8 9]], kernel 2: row (i, j) holds x[y + i, x + j].
    x = np.arange(1, 10).reshape(1, 1, 3, 3)
    y, dx = run(layer(kernel_size=[2]), x, np.ones((1, 4, 2, 2)))
    np.testing.assert_array_equal(y[0], [[[1, 2], [4, 5]], [[2, 3], [5, 6]],
                                         [[4, 5], [7, 8]], [[5, 6], [8, 9]]])
    # Each pixel's gradient counts the fields it lies in: 4 in the middle, 1 at a corner.
    np.testing.assert_array_equal(dx[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


def test_known_answer_padding(mode):
    # pad 1, kernel 3, stride 2 on 2 x 2: one field, centred at (0, 0); x = [[1 2] [3 4]].
    y, dx = run(layer(kernel_size=[3], pad=[1], stride=[2]), np.float32([[[[1, 2], [3, 4]]]]),
                np.arange(9).reshape(1, 9, 1, 1))
    np.testing.assert_array_equal(y.ravel(), [0, 0, 0, 0, 1, 2, 0, 3, 4])
    np.testing.assert_array_equal(dx[0, 0], [[4, 5], [7, 8]])  # dy rows 4, 5, 7, 8


def test_setup_and_top_left_block(mode):
    # Caffe's TestSetup: (2, 3, 10, 11), kernel 3, stride 2, dilation 3: extent 7,
    # (10 - 7) // 2 + 1 = 2 by (11 - 7) // 2 + 1 = 3, 3 * 9 = 27 rows.
    bottom, top = Blob(2, 3, 10, 11), Blob()
    layer(kernel_size=[3], stride=[2], dilation=[3]).setup([bottom], [top])
    assert top.shape == (2, 27, 2, 3)
    # Caffe's TestRect: kernel 5 x 3, the first column is the top-left field.
    x = np.random.default_rng(0).normal(size=(2, 3, 6, 5))
    y, _ = run(layer(kernel_h=5, kernel_w=3, stride=[2]), x)
    assert y.shape == (2, 45, 1, 2)
    c = np.arange(45)
    np.testing.assert_array_equal(y[0, :, 0, 0], x[0, c // 15, (c // 3) % 5, c % 3].astype(np.float32))


@st.composite
def im2col_cases(draw, max_axes=3, max_side=5):
    """(bottom shape, convolution_param fields, (kernel, pad, stride, dilation), seed)."""
    d = draw(st.integers(1, max_axes))
    kernel = [draw(st.integers(1, 3)) for _ in range(d)]
    dilation = [draw(st.integers(1, 2)) for _ in range(d)]
    pad = [draw(st.integers(0, 2)) for _ in range(d)]
    stride = [draw(st.integers(1, 3)) for _ in range(d)]
    smallest = [max(1, r * (k - 1) + 1 - 2 * p) for k, r, p in zip(kernel, dilation, pad)]
    spatial = [draw(st.integers(low, max(low, max_side))) for low in smallest]
    fields = {"kernel_size": kernel, "pad": pad, "stride": stride, "dilation": dilation}
    if d == 2:
        fields["force_nd_im2col"] = draw(st.booleans())
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), *spatial)
    return shape, fields, (kernel, pad, stride, dilation), draw(st.integers(0, 2**31 - 1))


@given(case=im2col_cases())
def test_matches_reference(mode, case):
    shape, fields, geometry, seed = case
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    top_shape = Blob()
    layer(**fields).setup([blob_from(x)], [top_shape])
    dy = rng.uniform(-1, 1, top_shape.shape).astype(np.float32)
    y, dx = run(layer(**fields), x, dy)
    y_ref, dx_ref = reference(x, dy, *geometry)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-6)


def test_axis_folds_leading_axes(mode):
    # axis 2: (2, 3, C, H, W) is a batch of 6 images.
    x = np.random.default_rng(4).uniform(-1, 1, (2, 3, 2, 4, 3)).astype(np.float32)
    y, _ = run(layer(kernel_size=[2], axis=2), x)
    flat, _ = run(layer(kernel_size=[2]), x.reshape(6, 2, 4, 3))
    assert y.shape == (2, 3, 8, 3, 2)
    np.testing.assert_array_equal(y.reshape(flat.shape), flat)


# ---- gradients, Caffe's settings
def test_gradient_exhaustive(mode):
    bottom = blob_from(np.random.default_rng(1).normal(size=(1, 1, 3, 3)))
    GradientChecker(1e-2, 1e-2).check_gradient_exhaustive(layer(kernel_size=[2]), [bottom], [Blob()])


@given(case=im2col_cases(max_axes=2, max_side=4))
def test_gradient(mode, case):
    shape, fields, _, seed = case
    bottom = blob_from(np.random.default_rng(seed).uniform(-1, 1, shape))
    GradientChecker(1e-2, 1e-2).check_gradient(layer(**fields), [bottom], [Blob()])


# ---- the OpenCL twin
@given(case=im2col_cases(max_side=6))
def test_engines_agree(gpu_only, case):
    shape, fields, _, seed = case
    x = np.random.default_rng(seed).uniform(-1, 1, shape)
    compare_engines(layer_param("Im2col", "cols", convolution_param=fields), [x])


@pytest.mark.parametrize("nd", [False, True])
def test_data_stays_on_the_device(gpu_only, nd):
    im2col_layer = layer(kernel_size=[3], pad=[1], stride=[2], force_nd_im2col=nd)
    bottom, top = blob_from(np.random.default_rng(0).uniform(-1, 1, (3, 2, 5, 4))), Blob()
    im2col_layer.setup([bottom], [top])
    bottom.mutable_gpu_data()
    top.mutable_gpu_diff()
    before = dict(SyncedMemory.transfers)
    im2col_layer.forward([bottom], [top])
    im2col_layer.backward([top], [True], [bottom])
    assert SyncedMemory.transfers == before


# ---- bad input
@pytest.mark.parametrize("fields, shape, message", [
    ({}, (1, 1, 4, 4), "kernel_size .* must be specified"),
    ({"kernel_size": [5]}, (1, 1, 4, 4), "larger than the padded input"),
    ({"kernel_size": [2, 2, 2]}, (1, 1, 4, 4), "once per spatial axis"),
    ({"kernel_h": 2, "kernel_w": 2}, (1, 1, 4, 4, 4), "only be used for 2-D"),
    ({"kernel_size": [2], "kernel_h": 2, "kernel_w": 2}, (1, 1, 4, 4), "not both"),
    ({"kernel_h": 2}, (1, 1, 4, 4), "kernel dimensions must be positive"),
    ({"kernel_size": [2], "stride": [0]}, (1, 1, 4, 4), "stride dimensions must be positive"),
    ({"kernel_size": [2], "axis": -1}, (1, 1, 4, 4), "no spatial axis"),
])
def test_bad_input(mode, fields, shape, message):
    with pytest.raises(MinicaffeError, match=message) as err:
        layer(**fields).setup([Blob(shape)], [Blob()])
    assert "Im2col layer 'cols'" in str(err.value)


def test_bad_bottom_after_setup_and_in_place(mode):
    im2col_layer, top = layer(kernel_size=[3]), Blob()
    im2col_layer.setup([Blob(1, 1, 4, 4)], [top])
    with pytest.raises(MinicaffeError, match="Im2col layer 'cols'.*larger than the padded input"):
        im2col_layer.forward([Blob(1, 1, 2, 4)], [top])
    x = Blob(1, 1, 4, 4)
    with pytest.raises(MinicaffeError, match="Im2col layer 'cols'.*in-place"):
        layer(kernel_size=[3]).setup([x], [x])
