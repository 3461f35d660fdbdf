"""LRN: hand-computed values in both regions, a loop reference, Caffe's gradient checks,
the OpenCL twin against numpy, bad input."""
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


def lrn(**fields):
    return create_layer(layer_param("LRN", lrn_param=fields))


def forward(layer, x):
    bottom, top = blob_from(x), Blob()
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    return bottom, top


# ---- known answers, worked out by hand
@pytest.mark.parametrize("x, fields, expected", [
    # size 3, alpha 3 (alpha / n = 1), k 0, beta 1/2. Sums of squares over channels
    # {0, 1}, {0, 1, 2}, {1, 2}: 9, 25, 25 -> y = (0 / 3, 3 / 5, 4 / 5).
    ([0, 3, 4], dict(local_size=3, alpha=3, beta=0.5, k=0), [0, 0.6, 0.8]),
    # k 7, beta 1: sums 1 + 4, 1 + 4 + 4, 4 + 4 -> s = 12, 16, 15 -> y = x / s.
    ([1, 2, 2], dict(local_size=3, alpha=3, beta=1, k=7), [1 / 12, 2 / 16, 2 / 15]),
    # The default k = 1; size 1 is each channel alone: s = 1 + 2 x^2 -> 3, 9 (beta 1/2).
    ([1, 2], dict(local_size=1, alpha=2, beta=0.5), [1 / 3 ** 0.5, 2 / 3]),
])
def test_across_channels_known_values(mode, x, fields, expected):
    # The same column at each of the 2x2 pixels of two images.
    x = np.tile(np.array(x, np.float32)[None, :, None, None], (2, 1, 2, 2))
    _, top = forward(lrn(**fields), x)
    np.testing.assert_allclose(top.cpu_data(), np.tile(np.array(expected)[None, :, None, None],
                                                       (2, 1, 2, 2)), rtol=1e-6)


def test_within_channel_counts_the_padding_and_ignores_k(mode):
    # A 3x3 map of ones, size 3, alpha 9 (alpha / n^2 = 1), beta 1. The window around a
    # corner holds 4 pixels, an edge 6, the centre 9, all divided by n^2 = 9 as Caffe's
    # padded AVE pooling does: s = 1 + 4, 1 + 6, 1 + 9. k (here 5) plays no part.
    _, top = forward(lrn(norm_region="WITHIN_CHANNEL", local_size=3, alpha=9, beta=1, k=5),
                     np.ones((1, 2, 3, 3)))
    corner, edge, centre = 1 / 5, 1 / 7, 1 / 10
    expected = [[corner, edge, corner], [edge, centre, edge], [corner, edge, corner]]
    np.testing.assert_allclose(top.cpu_data(), np.tile(expected, (1, 2, 1, 1)), rtol=1e-6)


def test_known_gradient_size_one(mode):
    # size 1, alpha 1, beta 1, k 1: y = x / (1 + x^2), dy/dx = (1 - x^2) / (1 + x^2)^2.
    # At x = 2: -3 / 25; at x = 0: 1.
    layer = lrn(local_size=1, alpha=1, beta=1)
    bottom, top = forward(layer, [[[[2.0]], [[0.0]]]])
    top.diff = np.ones(top.shape)
    layer.backward([top], [True], [bottom])
    np.testing.assert_allclose(bottom.cpu_diff().ravel(), [-3 / 25, 1], rtol=1e-6)


# ---- a reference: the definition, one value at a time, in float64
def reference(x, size, alpha, beta, k, region):
    n, c, h, w = x.shape
    pad = (size - 1) // 2
    y = np.zeros(x.shape)
    for a in range(n):
        for b in range(c):
            for i in range(h):
                for j in range(w):
                    if region == "ACROSS_CHANNELS":
                        window = x[a, max(b - pad, 0):b + pad + 1, i, j]
                        s = k + alpha / size * np.sum(window ** 2)
                    else:
                        window = x[a, b, max(i - pad, 0):i + pad + 1, max(j - pad, 0):j + pad + 1]
                        s = 1 + alpha / size ** 2 * np.sum(window ** 2)
                    y[a, b, i, j] = x[a, b, i, j] * s ** -beta
    return y


@st.composite
def lrn_cases(draw):
    """lrn_param fields and a bottom: the region, an odd size, alpha, beta, k."""
    fields = {"norm_region": draw(st.sampled_from(["ACROSS_CHANNELS", "WITHIN_CHANNEL"])),
              "local_size": draw(st.sampled_from([1, 3, 5, 7])),
              "alpha": draw(st.sampled_from([1e-4, 0.5, 2.0])),
              "beta": draw(st.sampled_from([0.75, 0.5, 1.3])),
              "k": draw(st.sampled_from([1.0, 2.0, 0.5]))}
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 6)), draw(st.integers(1, 4)),
             draw(st.integers(1, 4)))
    x = np.random.default_rng(draw(st.integers(0, 2**31 - 1))).standard_normal(shape)
    return fields, x.astype(np.float32)


@given(lrn_cases())
def test_matches_the_definition(mode, case):
    fields, x = case
    _, top = forward(lrn(**fields), x)
    expected = reference(x.astype(np.float64), fields["local_size"], fields["alpha"],
                         fields["beta"], fields["k"], fields["norm_region"])
    np.testing.assert_allclose(top.cpu_data(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("block", [4, 12, 1 << 17])  # channels per block: 1, 3, all 7
def test_forward_in_blocks_of_channels(block):
    """The numpy forward across channels, a block of channels at a time (each block's
    window sums reach into its neighbours), gives the definition's values."""
    x = np.random.default_rng(3).standard_normal((2, 7, 2, 2)).astype(np.float32)
    layer = lrn(local_size=5, alpha=2.0, beta=0.75, k=1.5)
    layer.BLOCK = block  # values per block; an image here is 7 channels of 4
    _, top = forward(layer, x)
    expected = reference(x.astype(np.float64), 5, 2.0, 0.75, 1.5, "ACROSS_CHANNELS")
    np.testing.assert_allclose(top.cpu_data(), expected, rtol=1e-5, atol=1e-6)


# ---- gradients, with Caffe's checker settings (stepsize 1e-2, threshold 1e-2)
@pytest.mark.parametrize("fields, shape", [
    ({}, (1, 7, 1, 2)),  # TestGradientAcrossChannels (defaults: size 5, alpha 1, beta 0.75)
    ({"local_size": 15}, (1, 7, 1, 2)),  # TestGradientAcrossChannelsLargeRegion
    ({"norm_region": "WITHIN_CHANNEL", "local_size": 3}, (1, 1, 3, 3)),  # ...WithinChannel
], ids=["across", "across_large", "within"])
def test_gradient_caffe_cases(mode, fields, shape):
    # Caffe's bottom is 2x7x3x3 Gaussian; smaller here (the exhaustive check runs two
    # forwards per pair of values), keeping 7 channels so that size 15 overhangs both ends.
    bottom = blob_from(np.random.default_rng(1701).standard_normal(shape))
    GradientChecker(1e-2, 1e-2).check_gradient_exhaustive(lrn(**fields), [bottom], [Blob()])


@given(lrn_cases())
def test_gradient_property(mode, case):
    fields, x = case
    GradientChecker(1e-2, 1e-2).check_gradient(lrn(**fields), [blob_from(x)], [Blob()])


# ---- the OpenCL twin
@given(lrn_cases(), st.sampled_from([1.0, 30.0]))
def test_engines_agree(gpu_only, case, spread):
    # spread 30 makes s large, so s^-beta is small and the gradient's two terms cancel.
    fields, x = case
    compare_engines(layer_param("LRN", lrn_param=fields), [x * np.float32(spread)])


@pytest.mark.parametrize("region", ["ACROSS_CHANNELS", "WITHIN_CHANNEL"])
def test_data_stays_on_the_device(gpu_only, region):
    # With the bottom data and the top diff only on the device (as between layers of a
    # net), forward and backward copy nothing either way: a host read would be counted.
    layer = lrn(norm_region=region, local_size=3)
    bottom, top = blob_from(np.random.default_rng(0).standard_normal((2, 5, 4, 3))), Blob()
    layer.setup([bottom], [top])
    bottom.mutable_gpu_data()
    top.mutable_gpu_diff()
    before = dict(SyncedMemory.transfers)
    layer.forward([bottom], [top])
    layer.backward([top], [True], [bottom])
    assert SyncedMemory.transfers == before


# ---- bad input
@pytest.mark.parametrize("fields, message", [
    (dict(local_size=4), "local_size must be odd"),
    (dict(local_size=0), "local_size must be odd"),
    (dict(norm_region="WITHIN_CHANNEL", local_size=2), "local_size must be odd"),
])
def test_bad_parameters(mode, fields, message):
    with pytest.raises(MinicaffeError, match=f"LRN layer 'lrn': {message}"):
        lrn(**fields).setup([blob_from(np.zeros((1, 3, 2, 2)))], [Blob()])


@pytest.mark.parametrize("shape", [(2, 3, 4), (1, 2, 3, 4, 5)])
def test_bottom_must_be_4d(mode, shape):
    with pytest.raises(MinicaffeError, match="LRN layer 'lrn': .*must have 4 axes"):
        lrn().setup([blob_from(np.zeros(shape))], [Blob()])


def test_blob_counts(mode):
    x = blob_from(np.zeros((1, 3, 2, 2)))
    with pytest.raises(MinicaffeError, match="lrn"):
        lrn().setup([x, x], [Blob()])
    with pytest.raises(MinicaffeError, match="lrn"):
        lrn().setup([x], [Blob(), Blob()])
