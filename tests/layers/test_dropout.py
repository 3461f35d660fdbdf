"""Dropout: the mask, TRAIN vs TEST, gradients, in-place use, statistics, bad input."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicaffe import common
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.layers.dropout import DropoutLayer
from minicaffe.testing import GradientChecker
from tests.strategies import blob_from, blobs, layer_param


@pytest.fixture(scope="module")
def mode(mode):
    """The engines to test: the OpenCL one only once the layer has its twin."""
    if mode == common.GPU and not DropoutLayer.has_gpu():
        pytest.skip("Dropout has no OpenCL implementation yet")
    return mode


def dropout(ratio=0.5, phase="TRAIN"):
    return create_layer(layer_param("Dropout", phase=phase, dropout_param={"dropout_ratio": ratio}))


ratios = st.floats(0.05, 0.95).map(lambda r: float(np.float32(r)))  # as the proto stores it


def test_known_values_train(mode):
    # ratio 3/4: keep each value with probability 1/4 and multiply it by 4.
    x = np.array([1, 2, 3, 4, -1, -2, -3, -4], dtype=np.float32)
    bottom, top, layer = blob_from(x), Blob(), dropout(0.75)
    layer.setup([bottom], [top])
    common.set_random_seed(7)
    layer.forward([bottom], [top])
    # The mask is documented as rng().random(shape) < 1 - ratio: redraw it independently.
    common.set_random_seed(7)
    keep = common.rng().random(x.shape) < 0.25
    assert 0 < keep.sum() < x.size  # this seed keeps some and drops some
    np.testing.assert_array_equal(top.cpu_data(), np.where(keep, 4 * x, 0))
    top.diff = np.arange(1, 9)
    layer.backward([top], [True], [bottom])
    np.testing.assert_array_equal(bottom.cpu_diff(), np.where(keep, 4 * np.arange(1, 9), 0))


def test_known_values_test_phase_is_identity(mode):
    x = [1.5, -2.0, 0.25]
    bottom, top, layer = blob_from(x), Blob(), dropout(0.5, phase="TEST")
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    np.testing.assert_array_equal(top.cpu_data(), np.float32(x))
    top.diff = [3, 4, 5]
    layer.backward([top], [True], [bottom])
    np.testing.assert_array_equal(bottom.cpu_diff(), [3, 4, 5])


@given(bottom=blobs(max_side=4), ratio=ratios)
def test_gradient_train(mode, bottom, ratio):
    # The checker reseeds the RNG before every forward, so every evaluation sees one mask.
    GradientChecker(1e-2, 1e-3).check_gradient_eltwise(dropout(ratio), [bottom], [Blob()])


@given(bottom=blobs(max_side=4), ratio=ratios)
def test_gradient_test_phase(mode, bottom, ratio):
    GradientChecker(1e-2, 1e-3).check_gradient_eltwise(dropout(ratio, "TEST"), [bottom], [Blob()])


def run(layer, bottom, top, dy, seed):
    layer.setup([bottom], [top])
    common.set_random_seed(seed)
    layer.forward([bottom], [top])
    y = top.cpu_data().copy()
    top.diff = dy
    layer.backward([top], [True], [bottom])
    return y, bottom.cpu_diff().copy()


@given(bottom=blobs(), ratio=ratios, phase=st.sampled_from(["TRAIN", "TEST"]),
       seed=st.integers(0, 2**31 - 1))
def test_in_place_matches_out_of_place(mode, bottom, ratio, phase, seed):
    x = bottom.cpu_data().copy()
    dy = np.random.default_rng(seed).uniform(-1, 1, x.shape).astype(np.float32)
    y, dx = run(dropout(ratio, phase), blob_from(x), Blob(), dy, seed)
    y_in, dx_in = run(dropout(ratio, phase), bottom, bottom, dy, seed)  # top is the bottom
    np.testing.assert_array_equal(y_in, y)
    np.testing.assert_array_equal(dx_in, dx)


@given(ratio=ratios, seed=st.integers(0, 2**31 - 1))
def test_statistics_keep_fraction_and_expectation(mode, ratio, seed):
    n = 200_000
    x = np.random.default_rng(seed).uniform(0.5, 1.5, n).astype(np.float32)
    bottom, top, layer = blob_from(x), Blob(), dropout(ratio)
    layer.setup([bottom], [top])
    common.set_random_seed(seed + 1)  # not x's seed: the mask must not depend on x
    layer.forward([bottom], [top])
    y, keep = top.cpu_data(), 1.0 - ratio
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / np.float32(keep), rtol=1e-6)
    # Binomial fraction: 5 standard deviations, so a correct layer fails ~1 in 10^6 draws.
    sigma = np.sqrt(keep * (1 - keep) / n)
    assert abs(kept.mean() - keep) < 5 * sigma
    # E[y] = x: the scaling keeps the mean activation what TEST will see.
    assert abs(y.mean() / x.mean() - 1) < 5 * sigma / keep * 1.5


@given(ratio=ratios)
def test_masks_differ_between_forwards(mode, ratio):
    bottom, top, layer = blob_from(np.ones(1000)), Blob(), dropout(ratio)
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    first = top.cpu_data().copy()
    layer.forward([bottom], [top])
    assert not np.array_equal(first, top.cpu_data())


@pytest.mark.parametrize("ratio", [1.0, 1.5, -0.1])
def test_bad_ratio(mode, ratio):
    layer = create_layer(layer_param("Dropout", name="drop_bad",
                                     dropout_param={"dropout_ratio": ratio}))
    with pytest.raises(MinicaffeError, match=r"Dropout layer 'drop_bad': dropout_ratio"):
        layer.setup([Blob(3)], [Blob()])
