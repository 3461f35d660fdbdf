"""Pooling: Caffe's hand-computed cases, output size, a loop reference, gradients, the
OpenCL twin against numpy, bad input."""
import math

import numpy as np
import pytest
from google.protobuf import text_format
from hypothesis import assume, example, given
from hypothesis import strategies as st

from minicaffe import TRAIN, Net, common
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.proto import caffe_pb2
from minicaffe.syncedmem import SyncedMemory
from minicaffe.testing import GradientChecker
from minicaffe.testing.engines import compare_engines
from tests.strategies import blob_from, layer_param

FLT_MAX = float(np.finfo(np.float32).max)


def pooling(phase="TRAIN", **fields):
    return create_layer(layer_param("Pooling", phase=phase, pooling_param=fields))


def forward(layer, x, num_tops=1):
    bottom, tops = blob_from(x), [Blob() for _ in range(num_tops)]
    layer.setup([bottom], tops)
    layer.forward([bottom], tops)
    return bottom, tops


# ---- Caffe's hand-computed cases (test_pooling_layer.cpp), each on 2 images x 2 channels
MAGIC6 = [[35, 1, 6, 26, 19, 24], [3, 32, 7, 21, 23, 25], [31, 9, 2, 22, 27, 20],
          [8, 28, 33, 17, 10, 15], [30, 5, 34, 12, 14, 16], [4, 36, 29, 13, 18, 11]]
CAFFE_MAX_CASES = [
    ("square", dict(kernel_size=2),
     [[1, 2, 5, 2, 3], [9, 4, 1, 4, 8], [1, 2, 5, 2, 3]],
     [[9, 5, 5, 8], [9, 5, 5, 8]],
     [[5, 2, 2, 9], [5, 12, 12, 9]]),
    ("rect_high", dict(kernel_h=3, kernel_w=2), MAGIC6,
     [[35, 32, 26, 27, 27], [32, 33, 33, 27, 27], [31, 34, 34, 27, 27], [36, 36, 34, 18, 18]],
     [[0, 7, 3, 16, 16], [7, 20, 20, 16, 16], [12, 26, 26, 16, 16], [31, 31, 26, 34, 34]]),
    ("rect_wide", dict(kernel_h=2, kernel_w=3), MAGIC6,
     [[35, 32, 26, 26], [32, 32, 27, 27], [33, 33, 33, 27], [34, 34, 34, 17], [36, 36, 34, 18]],
     [[0, 7, 3, 3], [7, 7, 16, 16], [20, 20, 20, 16], [26, 26, 26, 21], [31, 31, 26, 34]]),
]


@pytest.mark.parametrize("name, param, image, expected, expected_mask", CAFFE_MAX_CASES,
                         ids=[c[0] for c in CAFFE_MAX_CASES])
@pytest.mark.parametrize("num_tops", [1, 2])
def test_caffe_max_cases(mode, name, param, image, expected, expected_mask, num_tops):
    x = np.tile(np.array(image, dtype=np.float32), (2, 2, 1, 1))
    layer = pooling(pool="MAX", **param)
    bottom, tops = forward(layer, x, num_tops)
    np.testing.assert_array_equal(tops[0].cpu_data(), np.tile(expected, (2, 2, 1, 1)))
    mask = tops[1] if num_tops == 2 else layer.max_idx
    np.testing.assert_array_equal(mask.cpu_data(), np.tile(expected_mask, (2, 2, 1, 1)))


def test_caffe_max_padded(mode):
    # 3x3 image, kernel 3, stride 2, pad 2: every window but the corners sees the 4s.
    _, (top,) = forward(pooling(pool="MAX", kernel_size=3, stride=2, pad=2),
                        [[[[1, 2, 4], [2, 3, 2], [4, 2, 1]]]])
    np.testing.assert_array_equal(top.cpu_data()[0, 0], [[1, 4, 4], [4, 4, 4], [4, 4, 1]])


def test_caffe_ave_padded_counts_padding_as_zero(mode):
    # A constant 2 image, kernel 3, stride 1, pad 1: corners average 4 pixels over 9.
    _, (top,) = forward(pooling(pool="AVE", kernel_size=3, stride=1, pad=1), np.full((1, 1, 3, 3), 2))
    np.testing.assert_allclose(top.cpu_data()[0, 0], [[8 / 9, 4 / 3, 8 / 9], [4 / 3, 2, 4 / 3],
                                                      [8 / 9, 4 / 3, 8 / 9]], rtol=1e-6)


def test_ave_window_overhang_is_not_counted(mode):
    # CEIL output of a 1x3 row with kernel 2, stride 2: windows [0, 2) and [2, 4) -> [2, 3),
    # no pad, so the second window's size is min(2 + 2, 3 + 0) - 2 = 1.
    _, (top,) = forward(pooling(pool="AVE", kernel_size=2, stride=2), [[[[1, 3, 8], [5, 7, 10]]]])
    np.testing.assert_allclose(top.cpu_data()[0, 0], [[4, 9]], rtol=1e-6)


def test_ties_pick_the_first_maximum_in_row_major_order(mode):
    layer = pooling(pool="MAX", kernel_size=2, stride=1, pad=1)
    _, (top,) = forward(layer, [[[[1, 3, 3], [3, 0, 3], [3, 3, 1]]]])
    np.testing.assert_array_equal(layer.max_idx.cpu_data()[0, 0],
                                  [[0, 1, 1, 2], [3, 1, 1, 2], [3, 3, 5, 5], [6, 6, 7, 8]])
    np.testing.assert_array_equal(top.cpu_data()[0, 0], [[1, 3, 3, 3], [3, 3, 3, 3],
                                                         [3, 3, 3, 3], [3, 3, 3, 1]])


@pytest.mark.parametrize("num_tops", [1, 2])
def test_mask_when_windows_tile_the_image(mode, num_tops):
    # LeNet's 2x2 stride 2: every pixel in exactly one window. Caffe fills the mask
    # (max_idx_, or the second top) whatever the geometry.
    x = [[[[1, 3, 2, 0], [4, 2, 9, 1], [0, 0, 1, 1], [5, 0, 1, 7]]]]
    layer = pooling(pool="MAX", kernel_size=2, stride=2)
    _, tops = forward(layer, x, num_tops)
    np.testing.assert_array_equal(tops[0].cpu_data()[0, 0], [[4, 9], [5, 7]])
    mask = tops[1] if num_tops == 2 else layer.max_idx
    np.testing.assert_array_equal(mask.cpu_data()[0, 0], [[4, 6], [12, 15]])


def test_max_backward_routes_to_argmax(mode):
    layer = pooling(pool="MAX", kernel_size=2, stride=1)
    bottom, (top,) = forward(layer, [[[[1, 2, 5, 2, 3], [9, 4, 1, 4, 8], [1, 2, 5, 2, 3]]]])
    top.diff = np.arange(1, 9).reshape(1, 1, 2, 4)
    layer.backward([top], [True], [bottom])
    # masks [[5, 2, 2, 9], [5, 12, 12, 9]]: index 5 gets 1 + 5, 2 gets 2 + 3, 9 gets 4 + 8, 12 gets 6 + 7
    expected = np.zeros(15)
    expected[[5, 2, 9, 12]] = [6, 5, 12, 13]
    np.testing.assert_array_equal(bottom.cpu_diff().ravel(), expected)


@pytest.mark.parametrize("param, shape", [
    (dict(kernel_size=3, stride=2), (2, 3, 3, 2)),
    (dict(kernel_size=3, stride=2, pad=1, pool="AVE"), (2, 3, 4, 3)),
    (dict(global_pooling=True, pool="AVE"), (2, 3, 1, 1)),
    (dict(kernel_size=2, stride=2, pad=1), (2, 3, 4, 3)),  # 6x5: ceil(6/2)+1 = 4, ceil(5/2)+1 = 4 -> 3
    (dict(kernel_size=3, stride=2, round_mode="FLOOR"), (2, 3, 2, 2)),
])
def test_setup_shapes(mode, param, shape):
    # Caffe's TestSetup* on a 2x3x6x5 bottom, plus the padded clip and FLOOR rounding.
    _, (top,) = forward(pooling(**param), np.zeros((2, 3, 6, 5)))
    assert top.shape == shape


def test_global_pooling_means_and_maxes_whole_channels(mode):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    _, (ave,) = forward(pooling(global_pooling=True, pool="AVE"), x)
    _, (top_max,) = forward(pooling(global_pooling=True, pool="MAX"), x)
    np.testing.assert_allclose(ave.cpu_data()[..., 0, 0], x.mean(axis=(2, 3)), rtol=1e-5)
    np.testing.assert_array_equal(top_max.cpu_data()[..., 0, 0], x.max(axis=(2, 3)))


# ---- output size against the formula, written out independently
def expected_pooled(size, k, s, pad, ceil, any_pad):
    span = size + 2 * pad - k
    out = (-(-span // s) if ceil else span // s) + 1  # integer ceil / floor of span / s
    # Caffe clips both axes when either has padding (`if (pad_h_ || pad_w_)`).
    if any_pad and (out - 1) * s >= size + pad:
        out -= 1
    return out


@st.composite
def pool_params(draw, max_stride=3, allow_empty_windows=True, allow_pad=True):
    """A pooling_param dict and a bottom shape it fits; allow_pad=False draws no padding."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, max_stride)), draw(st.integers(1, max_stride))
    ph, pw = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1))) if allow_pad else (0, 0)
    param = {"pool": draw(st.sampled_from(["MAX", "AVE"])),
             "round_mode": draw(st.sampled_from(["CEIL", "FLOOR"]))}
    param.update({"kernel_size": kh} if kh == kw and draw(st.booleans())
                 else {"kernel_h": kh, "kernel_w": kw})
    param.update({"stride": sh} if sh == sw and draw(st.booleans())
                 else {"stride_h": sh, "stride_w": sw})
    param.update({"pad": ph} if ph == pw and draw(st.booleans()) else {"pad_h": ph, "pad_w": pw})
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)),
             draw(st.integers(max(1, kh - 2 * ph), 7)), draw(st.integers(max(1, kw - 2 * pw), 7)))
    if not allow_empty_windows:
        assume(sh <= kh and sw <= kw)
    return param, shape


def kernel(param):
    k = param.get("kernel_size")
    return (k, k) if k else (param["kernel_h"], param["kernel_w"])


def stride(param):
    s = param.get("stride")
    return (s, s) if s else (param["stride_h"], param["stride_w"])


def padding(param):
    p = param.get("pad")
    return (p, p) if p is not None else (param["pad_h"], param["pad_w"])


@given(pool_params())
def test_output_size_matches_formula(mode, params):
    param, shape = params
    (kh, kw), (sh, sw), (ph, pw) = kernel(param), stride(param), padding(param)
    ceil = param["round_mode"] == "CEIL"
    _, (top,) = forward(pooling(**param), np.zeros(shape))
    any_pad = ph > 0 or pw > 0
    assert top.shape == shape[:2] + (expected_pooled(shape[2], kh, sh, ph, ceil, any_pad),
                                     expected_pooled(shape[3], kw, sw, pw, ceil, any_pad))


def test_padding_on_one_axis_clips_the_other(mode):
    # pad_h 1, pad_w 0, stride_w 2 on 2 columns: ceil((2 - 1) / 2) + 1 = 2 windows, but the
    # second starts at 2 >= W + pad_w, and Caffe drops it because *some* pad is nonzero.
    _, (top,) = forward(pooling(kernel_h=2, kernel_w=1, stride_h=1, stride_w=2, pad_h=1, pad_w=0),
                        np.zeros((1, 1, 1, 2)))
    assert top.shape == (1, 1, 2, 1)


@pytest.mark.parametrize("size, k, s, pad, unclipped, clipped", [
    (5, 2, 2, 1, 4, 3),  # the 4th window would start at 6 = size + pad: dropped
    (7, 3, 3, 2, 4, 3),  # the 4th window would start at 9 = size + pad: dropped
    (3, 3, 2, 2, 3, 3),  # the 3rd window starts at 4 < size + pad: kept
])
def test_padding_drops_window_that_would_start_in_padding(mode, size, k, s, pad, unclipped, clipped):
    assert math.ceil((size + 2 * pad - k) / s) + 1 == unclipped
    _, (top,) = forward(pooling(kernel_size=k, stride=s, pad=pad), np.zeros((1, 1, size, size)))
    assert top.shape[2:] == (clipped, clipped)


# ---- a reference: Caffe's loops, transcribed directly
def reference(x, param, dy):
    (kh, kw), (sh, sw), (ph, pw) = kernel(param), stride(param), padding(param)
    n, c, height, width = x.shape
    _, _, out_h, out_w = dy.shape
    y = np.zeros(dy.shape, np.float64)
    mask = np.full(dy.shape, -1)
    dx = np.zeros(x.shape, np.float64)
    for a in range(n):
        for b in range(c):
            for i in range(out_h):
                for j in range(out_w):
                    h0, w0 = i * sh - ph, j * sw - pw
                    if param["pool"] == "MAX":
                        h1, w1 = min(h0 + kh, height), min(w0 + kw, width)
                        best = -FLT_MAX
                        for h in range(max(h0, 0), h1):
                            for w in range(max(w0, 0), w1):
                                if x[a, b, h, w] > best:
                                    best, mask[a, b, i, j] = x[a, b, h, w], h * width + w
                        y[a, b, i, j] = best
                        if mask[a, b, i, j] >= 0:
                            dx[a, b].flat[mask[a, b, i, j]] += dy[a, b, i, j]
                    else:
                        h1, w1 = min(h0 + kh, height + ph), min(w0 + kw, width + pw)
                        size = (h1 - h0) * (w1 - w0)
                        window = x[a, b, max(h0, 0):min(h1, height), max(w0, 0):min(w1, width)]
                        y[a, b, i, j] = window.sum() / size if window.size else 0.0
                        if window.size:
                            dx[a, b, max(h0, 0):min(h1, height), max(w0, 0):min(w1, width)] += \
                                dy[a, b, i, j] / size
    return y, mask, dx


@given(pool_params(), st.integers(0, 2**31 - 1), st.booleans())
@example(({"pool": "MAX", "round_mode": "CEIL", "kernel_h": 1, "kernel_w": 1, "stride_h": 1,
           "stride_w": 2, "pad_h": 0, "pad_w": 0}, (1, 1, 2, 1)), 0, False)  # one top, windows tile
def test_matches_caffe_loops(mode, params, seed, ties):
    param, shape = params
    rng = np.random.default_rng(seed)
    # Small integers make ties (the first maximum must win, as in Caffe's strict '>').
    x = (rng.integers(-3, 4, shape) if ties else rng.standard_normal(shape)).astype(np.float32)
    num_tops = 2 if param["pool"] == "MAX" and rng.integers(2) else 1
    layer = pooling(**param)
    bottom, tops = forward(layer, x, num_tops)
    dy = rng.standard_normal(tops[0].shape).astype(np.float32)
    y, mask, dx = reference(x, param, dy)
    np.testing.assert_allclose(tops[0].cpu_data(), y, rtol=1e-5, atol=1e-6)
    if param["pool"] == "MAX":
        got = tops[1] if num_tops == 2 else layer.max_idx
        np.testing.assert_array_equal(got.cpu_data(), mask)
    tops[0].diff = dy
    layer.backward(tops, [True], [bottom])
    np.testing.assert_allclose(bottom.cpu_diff(), dx, rtol=1e-5, atol=1e-6)


def test_mask_indices_of_a_large_image(mode):
    # Mask indices h W + w past 255, in a small kernel: 3 rows of 200 columns, 3x3 windows.
    x = np.random.default_rng(5).standard_normal((1, 2, 3, 200)).astype(np.float32)
    param = {"pool": "MAX", "kernel_size": 3, "stride": 3, "pad": 0}
    layer = pooling(**param)
    _, (top,) = forward(layer, x)
    _, mask, _ = reference(x, param, np.zeros(top.shape))
    assert mask.max() > 400
    np.testing.assert_array_equal(layer.max_idx.cpu_data(), mask)


def test_windows_past_the_image_follow_caffe(mode):
    # Stride 3 > kernel 1 on 5 columns, CEIL: windows start at 0, 3, 6; the last is empty.
    layer = pooling(pool="MAX", kernel_size=1, stride=3)
    bottom, (top,) = forward(layer, np.arange(5, dtype=np.float32).reshape(1, 1, 1, 5))
    np.testing.assert_array_equal(top.cpu_data().ravel(), [0, 3, -FLT_MAX])
    np.testing.assert_array_equal(layer.max_idx.cpu_data().ravel(), [0, 3, -1])
    top.diff = [[[[1, 2, 3]]]]
    layer.backward([top], [True], [bottom])  # the empty window's gradient goes nowhere
    np.testing.assert_array_equal(bottom.cpu_diff().ravel(), [1, 0, 0, 2, 0])


# ---- gradients, with Caffe's checker settings
def distinct_values(shape, seed):
    """Values at least 0.05 apart, so no max is within a finite-difference step of a tie."""
    count = int(np.prod(shape))
    values = np.random.default_rng(seed).permutation(count) * 0.05 - count * 0.025
    return blob_from(values.reshape(shape))


@pytest.mark.parametrize("num_tops", [1, 2])
@pytest.mark.parametrize("kh, kw", [(3, 3), (3, 4), (4, 3), (4, 4)])
def test_gradient_max_caffe_cases(mode, kh, kw, num_tops):
    # Caffe's TestGradientMax (pad 1) and TestGradientMaxTopMask (no pad), on a smaller
    # bottom: one plane (planes are independent; test_engines_agree covers several), as
    # the exhaustive check runs ~2 forwards per (top, bottom) pair, slow on the OpenCL engine.
    pad = {"pad": 1} if num_tops == 1 else {}
    layer = pooling(pool="MAX", kernel_h=kh, kernel_w=kw, stride=2, **pad)
    GradientChecker(1e-4, 1e-2).check_gradient_exhaustive(
        layer, [distinct_values((1, 1, 6, 5), kh * 10 + kw)], [Blob() for _ in range(num_tops)])


@pytest.mark.parametrize("pad", [0, 2])
@pytest.mark.parametrize("kh, kw", [(3, 3), (3, 4), (4, 3), (4, 4)])
def test_gradient_ave_caffe_cases(mode, kh, kw, pad):
    # Caffe's TestGradientAve and TestGradientAvePadded, on a smaller bottom (one plane).
    layer = pooling(pool="AVE", kernel_h=kh, kernel_w=kw, stride=2, pad=pad)
    bottom = blob_from(np.random.default_rng(kh * 10 + kw).standard_normal((1, 1, 6, 5)))
    GradientChecker(1e-2, 1e-2).check_gradient_exhaustive(layer, [bottom], [Blob()])


@given(pool_params(max_stride=2, allow_empty_windows=False), st.integers(0, 2**31 - 1))
def test_gradient_property(mode, params, seed):
    param, shape = params
    if param["pool"] == "MAX":
        checker, bottom = GradientChecker(1e-4, 1e-2), distinct_values(shape, seed)
    else:
        checker = GradientChecker(1e-2, 1e-2)
        bottom = blob_from(np.random.default_rng(seed).standard_normal(shape))
    checker.check_gradient(pooling(**param), [bottom], [Blob()])


# ---- the OpenCL twin
@st.composite
def engine_params(draw):
    """pool_params(), or now and then (1 in 4) global pooling."""
    if draw(st.integers(0, 3)) > 0:
        return draw(pool_params())
    return {"global_pooling": True}, (draw(st.integers(1, 2)), draw(st.integers(1, 2)),
                                      draw(st.integers(1, 5)), draw(st.integers(1, 5)))


@given(engine_params(), st.sampled_from(["normal", "ties", "special"]),
       st.booleans(), st.integers(0, 2**31 - 1))
@example(({"kernel_size": 3, "stride": 2, "pad": 1}, (1, 2, 6, 5)), "normal", True, 0)  # CEIL overhang
def test_engines_agree(gpu_only, params, values, mask_top, seed):
    # Each drawn geometry is checked with both MAX and AVE. Ties included: the kernel
    # keeps the first maximum in row-major order, as numpy does, so masks and gradients
    # agree exactly. "special" adds NaN and +-inf: MAX skips NaN and -inf the same way
    # on both engines; AVE propagates them the same way.
    param, shape = params
    rng = np.random.default_rng(seed)
    if values == "normal":
        x = rng.standard_normal(shape)
    else:
        x = rng.integers(-2, 3, shape).astype(np.float64)
        if values == "special":
            x[rng.random(shape) < 0.3] = rng.choice([np.nan, np.inf, -np.inf])
    for pool in ("MAX", "AVE"):
        top_count = 2 if pool == "MAX" and mask_top else 1
        compare_engines(layer_param("Pooling", pooling_param={**param, "pool": pool}), [x],
                        top_count)


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
def test_data_stays_on_the_device(gpu_only, pool):
    # With the bottom data and the top diff only on the device (as between layers of a
    # net), forward and backward copy nothing either way: a host read would be counted.
    layer = pooling(pool=pool, kernel_size=3, stride=2, pad=1)
    bottom, top = blob_from(np.random.default_rng(0).standard_normal((2, 3, 7, 6))), Blob()
    layer.setup([bottom], [top])
    bottom.mutable_gpu_data()
    top.mutable_gpu_diff()
    before = dict(SyncedMemory.transfers)
    layer.forward([bottom], [top])
    layer.backward([top], [True], [bottom])
    assert SyncedMemory.transfers == before


# ---- bad input
@pytest.mark.parametrize("param, tops, message", [
    (dict(pool="STOCHASTIC", kernel_size=2, pad=1), 1, "STOCHASTIC takes no pad"),
    (dict(pool="STOCHASTIC", kernel_size=2), 2, "at most 1 top"),
    (dict(kernel_size=2, kernel_h=2, kernel_w=2), 1, "kernel_size OR"),
    (dict(kernel_h=2), 1, "kernel_size OR"),
    (dict(), 1, "kernel_size OR"),
    (dict(kernel_size=2, pad=1, pad_h=1, pad_w=1), 1, "pad OR"),
    (dict(kernel_size=2, stride_h=2), 1, "stride OR"),
    (dict(kernel_size=2, pad=2), 1, "must be smaller than the kernel"),
    (dict(kernel_size=0), 1, "kernel size must be positive"),
    (dict(kernel_size=2, stride=0), 1, "stride must be positive"),
    (dict(global_pooling=True, kernel_size=2), 1, "global_pooling"),
    (dict(global_pooling=True, stride=2), 1, "global_pooling"),
    (dict(pool="AVE", kernel_size=2), 2, "at most 1 top"),
    (dict(kernel_size=2), 3, "at most 2 top"),
    (dict(kernel_size=5), 1, "does not fit"),
])
def test_bad_parameters(mode, param, tops, message):
    with pytest.raises(MinicaffeError, match=message):
        pooling(**param).setup([blob_from(np.zeros((1, 1, 3, 3)))], [Blob() for _ in range(tops)])


def test_bottom_must_be_4d(mode):
    with pytest.raises(MinicaffeError, match="4 axes"):
        pooling(kernel_size=2).setup([blob_from(np.zeros((2, 3, 4)))], [Blob()])


# ---- STOCHASTIC (Caffe: pooling_layer.cu, test_stochastic_pooling.cpp)
def test_stochastic_test_phase_is_the_expected_pick(mode):
    # 2x2 windows, stride 2, CEIL over 5 columns: sum x^2 / sum x per window.
    # (1, 2, 3, 4): 30 / 10 = 3; all zeros: 0 (no division); the overhanging last
    # window holds only column 4, (5, 5): 50 / 10 = 5.
    x = [[[[1, 2, 0, 0, 5], [3, 4, 0, 0, 5]]]]
    _, (top,) = forward(pooling(phase="TEST", pool="STOCHASTIC", kernel_size=2, stride=2), x)
    np.testing.assert_allclose(top.cpu_data(), [[[[3, 0, 5]]]], rtol=1e-6)


def test_stochastic_train_picks_a_pixel_of_each_window(mode):
    # Caffe's TestStochasticTrain: every output is a value of its window, at the index kept.
    x = np.random.default_rng(3).uniform(0.1, 1, (2, 3, 6, 5)).astype(np.float32)
    layer = pooling(pool="STOCHASTIC", kernel_size=3, stride=2)
    _, (top,) = forward(layer, x)
    assert top.shape == (2, 3, 3, 2)
    picks = layer.rand_idx.cpu_data().astype(int)
    for n, c, i, j in np.ndindex(top.shape):
        h, w = divmod(picks[n, c, i, j], 5)
        assert 2 * i <= h < 2 * i + 3 and 2 * j <= w < 2 * j + 3
        assert top.cpu_data()[n, c, i, j] == x[n, c, h, w]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stochastic_picks_in_proportion_to_the_values(mode, seed):
    # 4000 copies of one 2x2 window (0, 1, 3, 4): each is picked with probability
    # x / 8 = (0, 1/8, 3/8, 1/2), one uniform per output. Pearson's chi-square over the
    # three possible picks (2 degrees of freedom) stays below 18.4 (p = 1e-4) for a fair
    # sampler, and a sampler off by 0.03 in any probability would exceed it; the 0 is
    # never picked.
    common.set_random_seed(seed)
    layer = pooling(pool="STOCHASTIC", kernel_size=2)
    _, (top,) = forward(layer, np.tile(np.float32([[0, 1], [3, 4]]), (4000, 1, 1, 1)))
    counts = np.bincount(layer.rand_idx.cpu_data().astype(int).ravel(), minlength=4)
    assert counts[0] == 0
    expected = 4000 * np.array([1, 3, 4]) / 8
    assert ((counts[1:] - expected) ** 2 / expected).sum() < 18.4, counts
    np.testing.assert_array_equal(np.sort(np.unique(top.cpu_data())), [1, 3, 4])


def test_stochastic_gradient_goes_to_the_picked_pixel_only(mode):
    # Overlapping 3x3 windows, stride 1: each window's dy lands on its own pick, summed
    # where windows picked the same pixel, and nowhere else.
    x = np.random.default_rng(4).uniform(0.1, 1, (2, 2, 5, 4)).astype(np.float32)
    layer = pooling(pool="STOCHASTIC", kernel_size=3, stride=1)
    bottom, (top,) = forward(layer, x)
    dy = np.random.default_rng(5).standard_normal(top.shape).astype(np.float32)
    top.diff = dy
    layer.backward([top], [True], [bottom])
    expected = np.zeros(x.shape)
    picks = layer.rand_idx.cpu_data().astype(int)
    for n, c, i, j in np.ndindex(top.shape):
        expected[n, c].flat[picks[n, c, i, j]] += dy[n, c, i, j]
    np.testing.assert_allclose(bottom.cpu_diff(), expected, rtol=1e-6, atol=1e-7)
    assert np.count_nonzero(bottom.cpu_diff()) <= top.count


def test_stochastic_gradient_caffe_case(mode):
    # Caffe's TestGradient: TRAIN, kernel 3, stride 2, values uniform in [0.1, 1),
    # checker (1e-4, 1e-2); the checker reseeds before every forward, so the picks stay.
    bottom = blob_from(np.random.default_rng(1701).uniform(0.1, 1, (1, 2, 6, 5)))
    GradientChecker(1e-4, 1e-2).check_gradient(
        pooling(pool="STOCHASTIC", kernel_size=3, stride=2), [bottom], [Blob()])


def test_stochastic_no_pick_gives_zero_and_no_gradient(mode):
    # The window (-2, 1) has S = -1: its running sums -2 and -1 never reach u S = -u > -1
    # (Caffe leaves such outputs unwritten). Then stride 3 > kernel 1 on 5 columns, CEIL:
    # the third window holds no pixel.
    layer = pooling(pool="STOCHASTIC", kernel_h=1, kernel_w=2, stride_h=1, stride_w=3)
    bottom, (top,) = forward(layer, [[[[-2, 1, 7, 2, 9]]]])
    assert top.shape == (1, 1, 1, 2)
    np.testing.assert_array_equal(top.cpu_data().ravel()[0], 0)
    np.testing.assert_array_equal(layer.rand_idx.cpu_data().ravel()[0], -1)
    layer = pooling(pool="STOCHASTIC", kernel_size=1, stride=3)
    bottom, (top,) = forward(layer, np.arange(1, 6, dtype=np.float32).reshape(1, 1, 1, 5))
    np.testing.assert_array_equal(top.cpu_data().ravel(), [1, 4, 0])
    np.testing.assert_array_equal(layer.rand_idx.cpu_data().ravel(), [0, 3, -1])
    top.diff = [[[[1, 2, 3]]]]
    layer.backward([top], [True], [bottom])
    np.testing.assert_array_equal(bottom.cpu_diff().ravel(), [1, 0, 0, 2, 0])


def test_stochastic_has_no_backward_in_the_test_phase(mode):
    layer = pooling(phase="TEST", pool="STOCHASTIC", kernel_size=2)
    bottom, (top,) = forward(layer, np.ones((1, 1, 2, 2)))
    with pytest.raises(MinicaffeError, match="Pooling layer 'pooling': .*no backward in the TEST"):
        layer.backward([top], [True], [bottom])


@given(pool_params(allow_pad=False), st.sampled_from(["TRAIN", "TEST"]), st.integers(0, 2**31 - 1))
def test_stochastic_engines_agree(gpu_only, params, phase, seed):
    # The same uniforms on both engines (hash_uniform), so the same picks, values and
    # gradients; a few negatives and zeros make windows that pick nothing.
    param, shape = params
    x = np.random.default_rng(seed).uniform(-0.2, 1, shape)
    x[x < 0.1] = 0
    compare_engines(layer_param("Pooling", phase=phase,
                                pooling_param={**param, "pool": "STOCHASTIC"}),
                    [x], backward=phase == "TRAIN", seed=seed)


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_stochastic_data_stays_on_the_device(gpu_only, phase):
    layer = pooling(phase=phase, pool="STOCHASTIC", kernel_size=3, stride=2)
    bottom, top = blob_from(np.random.default_rng(0).uniform(0, 1, (2, 3, 7, 6))), Blob()
    layer.setup([bottom], [top])
    bottom.mutable_gpu_data()
    top.mutable_gpu_diff()
    before = dict(SyncedMemory.transfers)
    layer.forward([bottom], [top])
    if phase == "TRAIN":
        layer.backward([top], [True], [bottom])
    assert SyncedMemory.transfers == before


# ---- MAX without a mask: deploy and test nets (numpy engine; the device always keeps one)
def special_values(shape, seed):
    """Small integers (ties) with NaN, +-inf and -FLT_MAX sprinkled in."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, shape).astype(np.float32)
    x[rng.random(shape) < 0.3] = rng.choice(np.float32([np.nan, np.inf, -np.inf, -FLT_MAX]))
    return x


@given(pool_params(), st.integers(0, 2**31 - 1))
@example(({"pool": "MAX", "round_mode": "CEIL", "kernel_size": 3, "stride": 2, "pad": 1},
          (1, 2, 6, 5)), 0)  # padding and the CEIL overhang
@example(({"pool": "MAX", "round_mode": "CEIL", "kernel_size": 3, "stride": 1, "pad": 1},
          (1, 2, 5, 6)), 2)  # GoogLeNet's: as wide as the bottom, the row shifted whole
@example(({"pool": "MAX", "round_mode": "CEIL", "kernel_h": 1, "kernel_w": 3, "stride": 1,
           "pad_h": 0, "pad_w": 1}, (2, 1, 3, 1)), 3)  # ... one column wide
@example(({"pool": "MAX", "round_mode": "CEIL", "kernel_h": 1, "kernel_w": 2, "stride_h": 3,
           "stride_w": 3, "pad_h": 0, "pad_w": 1}, (1, 1, 5, 7)), 1)  # windows with no pixel
def test_max_without_mask_gives_caffes_values(params, seed):
    # A layer whose net needs no gradient below it computes y alone, and gets the same
    # values as Caffe's loops and as the mask-keeping path: NaN and -inf never win,
    # empty windows give -FLT_MAX.
    param, shape = params
    param = {**param, "pool": "MAX"}
    x = special_values(shape, seed)
    with common.using_mode(common.CPU):  # whatever the module's `mode` fixture left set
        _, (top_with_mask,) = forward(pooling(**param), x)
        alone = pooling(**param)
        alone.bottom_need_backward = [False]  # as a Net sets it
        bottom, (top,) = forward(alone, x)
        y, _, _ = reference(x, param, np.zeros(top.shape))
        np.testing.assert_array_equal(top.cpu_data(), y)
        np.testing.assert_array_equal(top.cpu_data(), top_with_mask.cpu_data())
        # It kept no mask, so a gradient asked for all the same is refused, not made up.
        with pytest.raises(MinicaffeError, match="Pooling layer 'pooling': .*would not need"):
            alone.backward([top], [True], [bottom])
        alone.backward([top], [False], [bottom])  # what a Net asks: nothing


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("param", [dict(kernel_size=3, stride=1, pad=1),
                                   dict(kernel_h=2, kernel_w=5, stride=1, pad_h=1, pad_w=2)])
def test_max_without_mask_keeps_each_window_in_its_row(param, sign):
    # Pixels rising (or falling) through the rows: the row after (or before) a window
    # holds larger values than the window itself, so a pixel pulled in from there shows.
    x = sign * np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    with common.using_mode(common.CPU):
        layer = pooling(pool="MAX", **param)
        layer.bottom_need_backward = [False]
        _, (top,) = forward(layer, x)
    y, _, _ = reference(x, {"pool": "MAX", **param}, np.zeros(top.shape))
    np.testing.assert_array_equal(top.cpu_data(), y)


POOL_NET = """
layer { name: "x" type: "Input" top: "x" top: "target"
        input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 }
                      shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }
layer { name: "pool" type: "Pooling" bottom: "x" top: "pool"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
"""
LOSS = 'layer { name: "loss" type: "EuclideanLoss" bottom: "pool" bottom: "target" top: "loss" }'


def test_net_keeps_the_mask_only_when_a_gradient_is_needed():
    # 8x8, 3x3 stride 2, CEIL: the last windows hang over the edge.
    param = {"pool": "MAX", "kernel_size": 3, "stride": 2, "pad": 0}
    x = special_values((2, 3, 8, 8), 7)
    x[np.isnan(x) | np.isinf(x)] = 0.5  # finite, so the loss's gradient is too
    target = np.random.default_rng(8).standard_normal((2, 3, 4, 4)).astype(np.float32)

    def run(text):
        net = Net(text_format.Parse(text, caffe_pb2.NetParameter()), TRAIN)
        net.forward(x=x, target=target)
        return net, net.layer_dict["pool"]

    with common.using_mode(common.CPU):  # whatever the module's `mode` fixture left set
        # Deploy: no loss, no gradient: the values, and no mask.
        net, layer = run(POOL_NET)
        y, _, _ = reference(x, param, np.zeros((2, 3, 4, 4)))
        np.testing.assert_array_equal(net.blobs["pool"].cpu_data(), y)
        assert not layer.max_idx_fresh and not layer.max_idx.cpu_data().any()  # never written
        # Training, with the input's gradient asked for: the mask, and exact gradients.
        net, layer = run("force_backward: true\n" + POOL_NET + LOSS)
        assert layer.max_idx_fresh
        net.backward()
        dy = (net.blobs["pool"].cpu_data() - target) / 2  # EuclideanLoss: (a - b) / N
        y, _, dx = reference(x, param, dy)
        np.testing.assert_array_equal(net.blobs["pool"].cpu_data(), y)
        np.testing.assert_allclose(net.blobs["x"].cpu_diff(), dx, rtol=1e-6, atol=1e-7)
