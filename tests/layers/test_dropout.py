"""Dropout: the mask, its hash generator, TRAIN vs TEST, gradients, in-place use, statistics,
engines agree, bad input. Tests taking `mode` run once per engine (numpy, OpenCL)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicaffe import common
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.layers.dropout import hash_uniform
from minicaffe.syncedmem import SyncedMemory
from minicaffe.testing import GradientChecker
from minicaffe.testing.engines import compare_engines
from tests.strategies import blob_from, blobs, layer_param


def dropout_param(ratio=0.5, phase="TRAIN"):
    return layer_param("Dropout", phase=phase, dropout_param={"dropout_ratio": ratio})


def dropout(ratio=0.5, phase="TRAIN"):
    return create_layer(dropout_param(ratio, phase))


def splitmix64(seed, count):
    """The reference SplitMix64 (Vigna's splitmix64.c), one Python int at a time."""
    state, out = seed, []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) % 2**64
        z = state
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 % 2**64
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB % 2**64
        out.append(z ^ (z >> 31))
    return out


def reference_uniforms(seed, count):
    """The documented u_i: the top 24 bits of SplitMix64's output i, over 2^24."""
    return np.float32([(z >> 40) / 2**24 for z in splitmix64(int(seed), count)])


def test_splitmix64_reference_vectors():
    # Seed 1234567's first five outputs, as published (Rosetta Code, "Splitmix64"):
    # they pin down the reference that hash_uniform is checked against below.
    assert splitmix64(1234567, 5) == [6457827717110365317, 3203168211198807973,
                                      9817491932198370423, 4593380528125082431,
                                      16408922859458223821]
    np.testing.assert_array_equal(hash_uniform(1234567, 2),
                                  np.float32([5873360, 2913264]) / 2**24)


@given(seed=st.one_of(st.integers(0, 2**64 - 1), st.integers(2**64 - 40, 2**64 - 1)),
       count=st.integers(0, 40))
def test_hash_uniform_is_splitmix64(seed, count):
    # The vectorised numpy hash equals the one-at-a-time reference, wrap-around included.
    np.testing.assert_array_equal(hash_uniform(np.uint64(seed), count),
                                  reference_uniforms(seed, count))


@given(seed=st.integers(0, 2**64 - 1))
def test_hash_uniform_is_uniform_and_uncorrelated(seed):
    n = 100_000
    u = hash_uniform(np.uint64(seed), n).astype(np.float64)
    assert u.min() >= 0 and u.max() < 1
    # Every one of 16 bins holds 1/16 of the draws, to 5 binomial standard deviations.
    counts = np.bincount((u * 16).astype(int), minlength=16)
    assert np.all(np.abs(counts - n / 16) < 5 * np.sqrt(n / 16 * 15 / 16))
    # Neighbouring indices, and the same index under the next seed, are uncorrelated.
    v = hash_uniform(np.uint64((seed + 1) % 2**64), n).astype(np.float64)
    for a, b in ((u[:-1], u[1:]), (u, v)):
        assert abs(np.corrcoef(a, b)[0, 1]) < 5 / np.sqrt(n)


ratios = st.floats(0.05, 0.95).map(lambda r: float(np.float32(r)))  # as the proto stores it


def test_known_values_train(mode):
    # ratio 3/4: keep each value with probability 1/4 and multiply it by 4.
    x = np.array([1, 2, 3, 4, -1, -2, -3, -4], dtype=np.float32)
    bottom, top, layer = blob_from(x), Blob(), dropout(0.75)
    layer.setup([bottom], [top])
    common.set_random_seed(7)
    layer.forward([bottom], [top])
    # The mask is documented as u < 1 - ratio, with u the SplitMix64 uniforms for a seed
    # drawn from rng(): redraw it independently, with the one-at-a-time reference.
    common.set_random_seed(7)
    keep = reference_uniforms(common.rng().integers(2**64, dtype=np.uint64), x.size) < 0.25
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


@pytest.mark.opencl
@given(bottom=blobs(), ratio=st.one_of(st.just(0.0), ratios),
       phase=st.sampled_from(["TRAIN", "TEST"]), seed=st.integers(0, 2**31 - 1))
def test_engines_agree(bottom, ratio, phase, seed):
    # Both engines hash the same seed, so they draw the same mask: exact agreement.
    compare_engines(dropout_param(ratio, phase), [bottom.cpu_data()], seed=seed, rtol=0, atol=0)


@pytest.mark.opencl
@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_device_path_makes_no_host_copies(in_place, phase):
    x = np.arange(1, 101, dtype=np.float32)
    bottom = blob_from(x)
    top = bottom if in_place else Blob()
    layer = dropout(0.5, phase)
    with common.using_mode(common.GPU):
        layer.setup([bottom], [top])
        top.diff = np.ones_like(x)
        top.gpu_diff(), bottom.gpu_data()  # the inputs are on the device ...
        before = dict(SyncedMemory.transfers)
        layer.forward([bottom], [top])
        layer.backward([top], [True], [bottom])
        assert SyncedMemory.transfers == before  # ... and everything stays there
    expected = {0.0, 2.0} if phase == "TRAIN" else {1.0}  # TRAIN: dropped or scaled by 2
    assert set(np.unique(bottom.cpu_diff()).tolist()) == expected


@pytest.mark.parametrize("ratio", [1.0, 1.5, -0.1])
def test_bad_ratio(mode, ratio):
    layer = create_layer(layer_param("Dropout", name="drop_bad",
                                     dropout_param={"dropout_ratio": ratio}))
    with pytest.raises(MinicaffeError, match=r"Dropout layer 'drop_bad': dropout_ratio"):
        layer.setup([Blob(3)], [Blob()])
