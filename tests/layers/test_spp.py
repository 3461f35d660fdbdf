"""SPP: the pooling geometry and known answers by hand, Caffe's shapes, gradients (Caffe's
checker: stepsize 1e-4, threshold 1e-2), the OpenCL twin against numpy, bad input.
"""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.layers.spp import pooling_geometry
from minicaffe.syncedmem import SyncedMemory
from minicaffe.testing import GradientChecker
from minicaffe.testing.engines import compare_engines
from tests.strategies import blob_from, layer_param


def spp(height, pool="MAX"):
    return create_layer(layer_param("SPP", "spp", spp_param={"pyramid_height": height, "pool": pool}))


def run(layer, x, dy=None):
    bottom, top = blob_from(x), Blob()
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    y = top.data.copy()
    if dy is None:
        return y, None
    top.diff = dy
    layer.backward([top], [True], [bottom])
    return y, bottom.diff.copy()


@pytest.mark.parametrize("level, size, expected", [
    # (kernel_h, kernel_w, pad_h, pad_w): kernel ceil(size / bins), pad half the overhang.
    (0, (9, 8), (9, 8, 0, 0)),
    (1, (9, 8), (5, 4, 1, 0)),   # 2 bins of 5 overhang 9 by 1: pad (1 + 1) // 2 = 1
    (2, (9, 8), (3, 2, 2, 0)),   # 4 bins of 3 overhang by 3: pad 2
    (2, (7, 13), (2, 4, 1, 2)),  # 8 - 7 = 1 -> pad 1; 16 - 13 = 3 -> pad 2
])
def test_pooling_geometry(level, size, expected):
    assert pooling_geometry(level, *size) == expected


@pytest.mark.parametrize("shape, height, top_shape", [
    # Caffe's TestSetup and TestEqualOutputDims(2): C (4^L - 1) / 3 values per image.
    ((2, 3, 9, 8), 3, (2, 63)),
    ((10, 3, 7, 7), 3, (10, 63)),
    ((4, 3, 1024, 765), 5, (4, 1023)),
    ((2, 3, 9, 8), 1, (2, 3, 1, 1)),  # one level: the pooling's own output, not flattened
])
def test_top_shape(mode, shape, height, top_shape):
    top = Blob()
    spp(height).setup([Blob(shape)], [top])
    assert top.shape == top_shape


X44 = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)  # rows 0-3, 4-7, 8-11, 12-15


def test_known_answer_max(mode):
    # Level 0: the max, 15. Level 1: 2 x 2 bins of 2 x 2 pixels, maxima 5, 7, 13, 15.
    # Backward routes each bin's gradient to its max: 15 gets two, 5, 7, 13 one each.
    y, dx = run(spp(2), X44, np.ones((1, 5)))
    np.testing.assert_array_equal(y, [[15, 5, 7, 13, 15]])
    expected = np.zeros(16)
    expected[[5, 7, 13]], expected[15] = 1, 2
    np.testing.assert_array_equal(dx.ravel(), expected)


def test_known_answer_ave(mode):
    # Means: 7.5 over all; 2.5, 4.5, 10.5, 12.5 over the bins. Each pixel's gradient:
    # 1/16 from level 0 plus 1/4 from its bin.
    y, dx = run(spp(2, "AVE"), X44, np.ones((1, 5)))
    np.testing.assert_allclose(y, [[7.5, 2.5, 4.5, 10.5, 12.5]])
    np.testing.assert_allclose(dx, np.full((1, 1, 4, 4), 1 / 16 + 1 / 4))


def test_known_answer_channels_and_padding(mode):
    # A 3 x 3 channel at level 1: kernel 2, pad 1, so the bins are rows {0}, {1, 2} by
    # columns {0}, {1, 2}; x = 0..8 gives maxima 0, 2, 6, 8. Channel 1 is channel 0 + 100.
    # Each level is flattened channel by channel before the levels are concatenated.
    x = np.stack([np.arange(9.0).reshape(3, 3), 100 + np.arange(9.0).reshape(3, 3)])[None]
    y, _ = run(spp(2), x)
    np.testing.assert_array_equal(y, [[8, 108, 0, 2, 6, 8, 100, 102, 106, 108]])


def test_one_level_is_global_pooling(mode):
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 4)).astype(np.float32)
    y, _ = run(spp(1), x)
    np.testing.assert_array_equal(y, x.max(axis=(2, 3), keepdims=True))


def test_reshape_to_a_new_size(mode):
    # The pooling geometry follows the bottom: a 7 x 6 image after a 4 x 4 one gives what a
    # layer set up for 7 x 6 gives, and the same length.
    x = np.random.default_rng(1).normal(size=(2, 2, 7, 6)).astype(np.float32)
    layer, top = spp(3), Blob()
    layer.setup([Blob(2, 2, 4, 4)], [top])
    layer.forward([blob_from(x)], [top])
    fresh, _ = run(spp(3), x)
    assert top.shape == fresh.shape == (2, 42)
    np.testing.assert_array_equal(top.data, fresh)


# ---- gradients, Caffe's settings
@pytest.mark.parametrize("pool", ["MAX", "AVE"])
def test_gradient_exhaustive(mode, pool):
    bottom = blob_from(np.random.default_rng(2).normal(size=(1, 1, 4, 4)))
    GradientChecker(1e-4, 1e-2).check_gradient_exhaustive(spp(2, pool), [bottom], [Blob()])


@st.composite
def spp_cases(draw, max_side=7):
    """(bottom shape, pyramid height, pool, seed), every level's padding under its kernel."""
    height = draw(st.integers(1, 3))
    size = (draw(st.integers(1, max_side)), draw(st.integers(1, max_side)))
    for level in range(height):
        kernel_h, kernel_w, pad_h, pad_w = pooling_geometry(level, *size)
        assume(pad_h < kernel_h and pad_w < kernel_w)
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), *size)
    return shape, height, draw(st.sampled_from(["MAX", "AVE"])), draw(st.integers(0, 2**31 - 1))


@given(case=spp_cases(max_side=5))
def test_gradient(mode, case):
    shape, height, pool, seed = case
    # Distinct values at least 1/count apart: a MAX window whose two largest values lie
    # within the checker's step of each other is a kink, where no gradient exists.
    count = int(np.prod(shape))
    values = (np.random.default_rng(seed).permutation(count) + 0.5) / count * 2 - 1
    bottom = blob_from(values.reshape(shape))
    GradientChecker(1e-4, 1e-2).check_gradient(spp(height, pool), [bottom], [Blob()])


# ---- the OpenCL twin
@given(case=spp_cases())
def test_engines_agree(gpu_only, case):
    shape, height, pool, seed = case
    x = np.random.default_rng(seed).uniform(-1, 1, shape)
    compare_engines(layer_param("SPP", "spp", spp_param={"pyramid_height": height, "pool": pool}), [x])


@pytest.mark.parametrize("height", [1, 3])
def test_data_stays_on_the_device(gpu_only, height):
    layer, top = spp(height), Blob()
    bottom = blob_from(np.random.default_rng(0).uniform(-1, 1, (2, 3, 7, 6)))
    layer.setup([bottom], [top])
    bottom.mutable_gpu_data()
    top.mutable_gpu_diff()
    layer.forward([bottom], [top])  # the first pass makes the inner layers' device buffers
    layer.backward([top], [True], [bottom])
    before = dict(SyncedMemory.transfers)
    layer.forward([bottom], [top])
    layer.backward([top], [True], [bottom])
    assert SyncedMemory.transfers == before


# ---- bad input
def test_bad_input(mode):
    with pytest.raises(MinicaffeError, match="SPP layer 'spp': spp_param.pyramid_height must be"):
        create_layer(layer_param("SPP", "spp")).setup([Blob(1, 1, 4, 4)], [Blob()])
    with pytest.raises(MinicaffeError, match="SPP layer 'spp': bottom .* must have 4 axes"):
        spp(2).setup([Blob(1, 4, 4)], [Blob()])
    # 1 pixel high: level 1's 2 bins of 1 pixel need a pad of 1, not under the kernel.
    with pytest.raises(MinicaffeError, match="SPP layer 'spp': pyramid level 1 .* of a 1 x 8 image: .*pad"):
        spp(3).setup([Blob(1, 1, 1, 8)], [Blob()])
    with pytest.raises(MinicaffeError, match="SPP layer 'spp' takes exactly 1 bottom"):
        spp(2).setup([Blob(1, 1, 4, 4), Blob(1, 1, 4, 4)], [Blob()])
    x = Blob(1, 1, 4, 4)
    with pytest.raises(MinicaffeError, match="SPP layer 'spp': does not allow in-place"):
        spp(2).setup([x], [x])
