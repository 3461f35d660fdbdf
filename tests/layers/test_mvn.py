"""MVN: hand-computed values (eps on the std), the statistics of the output, shapes,
Caffe's gradient checks, the OpenCL twin against numpy, bad input."""
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


def mvn(**fields):
    return create_layer(layer_param("MVN", mvn_param=fields))


def forward(layer, x):
    bottom, top = blob_from(x), Blob()
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    return bottom, top


# ---- known answers, worked out by hand
def test_known_values_and_where_eps_goes(mode):
    # Channel (0, 0, 4, 4): mean 2, deviations +-2, variance 4, std 2. With eps 0.5 on
    # the std, y = +-2 / 2.5 = +-0.8 (on the variance it would be +-2 / sqrt(4.5)).
    # Channel (1, 1, 1, 1) has std 0: y = 0 / eps = 0.
    x = [[[[0, 0], [4, 4]], [[1, 1], [1, 1]]]]
    _, top = forward(mvn(eps=0.5), x)
    np.testing.assert_allclose(top.cpu_data(), [[[[-0.8, -0.8], [0.8, 0.8]], [[0, 0], [0, 0]]]],
                               rtol=1e-6)


def test_across_channels_normalizes_each_image(mode):
    # Image 0's channels (0, 0) and (4, 4): over all 4 values mean 2, std 2 -> +-1.
    # Image 1: (1, 3) and (5, 7): mean 4, deviations -3, -1, 1, 3, variance 5.
    x = [[[[0, 0]], [[4, 4]]], [[[1, 3]], [[5, 7]]]]
    _, top = forward(mvn(across_channels=True), x)
    r = np.sqrt(5)
    np.testing.assert_allclose(top.cpu_data(), [[[[-1, -1]], [[1, 1]]],
                                                [[[-3 / r, -1 / r]], [[1 / r, 3 / r]]]], rtol=1e-6)


def test_mean_only(mode):
    # normalize_variance false: subtract each channel's mean, here 2 and 10; dx = dy - <dy>.
    layer = mvn(normalize_variance=False)
    bottom, top = forward(layer, [[[[1, 3]], [[10, 10]]]])
    np.testing.assert_allclose(top.cpu_data(), [[[[-1, 1]], [[0, 0]]]])
    top.diff = [[[[1, 5]], [[2, 2]]]]
    layer.backward([top], [True], [bottom])
    np.testing.assert_allclose(bottom.cpu_diff(), [[[[-2, 2]], [[0, 0]]]])


def test_known_gradient(mode):
    # x = (-1, 0, 1): mean 0, std sqrt(2/3), y = x / std. dy = (0, 1, 0): <dy> = 1/3 and
    # <y dy> = y_1 / 3 = 0, so dx = (dy - 1/3) / std = (-1/3, 2/3, -1/3) / sqrt(2/3).
    layer = mvn()
    bottom, top = forward(layer, [[[[-1, 0, 1]]]])
    top.diff = [[[[0, 1, 0]]]]
    layer.backward([top], [True], [bottom])
    np.testing.assert_allclose(bottom.cpu_diff().ravel(),
                               np.array([-1, 2, -1]) / 3 / np.sqrt(2 / 3), rtol=1e-5)


@pytest.mark.parametrize("shape, top_shape", [((3, 5), (3, 5, 1, 1)), ((2, 3, 4), (2, 3, 4, 1)),
                                              ((2, 3, 2, 2), (2, 3, 2, 2))])
def test_top_has_caffes_legacy_4d_shape(mode, shape, top_shape):
    _, top = forward(mvn(), np.random.default_rng(0).standard_normal(shape))
    assert top.shape == top_shape


# ---- Caffe's TestForward*: each group comes out with mean 0 and variance 1
@st.composite
def mvn_cases(draw, min_values=2, wide=True):
    """mvn_param fields and a bottom whose groups hold spread-out values: each group is
    its own shuffle of D evenly spaced values in [-2, 2] (std about 1.2, never nearly
    constant), then scaled and shifted (only shifted, by little, unless `wide`)."""
    fields = {"normalize_variance": draw(st.booleans()), "across_channels": draw(st.booleans())}
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3)),
             draw(st.integers(1, 4)))
    dim = int(np.prod(shape[1:] if fields["across_channels"] else shape[2:]))
    if dim < min_values:
        shape = shape[:3] + (shape[3] + min_values,)
        dim = int(np.prod(shape[1:] if fields["across_channels"] else shape[2:]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    groups = int(np.prod(shape)) // dim
    x = rng.permuted(np.tile(np.linspace(-2, 2, dim), (groups, 1)), axis=1).reshape(shape)
    if wide:
        return fields, x * draw(st.sampled_from([0.5, 3.0])) + draw(st.sampled_from([-7, 0, 2]))
    return fields, x + draw(st.sampled_from([0.0, 0.5]))


@given(mvn_cases())
def test_groups_have_mean_zero_and_unit_variance(mode, case):
    fields, x = case
    _, top = forward(mvn(**fields), x.astype(np.float32))
    y = top.cpu_data().reshape(x.shape[0], -1) if fields["across_channels"] else \
        top.cpu_data().reshape(x.shape[0] * x.shape[1], -1)
    np.testing.assert_allclose(y.mean(axis=1), 0, atol=1e-5)
    if fields["normalize_variance"]:
        np.testing.assert_allclose(y.var(axis=1), 1, rtol=1e-4)
    else:  # only the mean moved
        groups = x.reshape(y.shape)
        np.testing.assert_allclose(y, groups - groups.mean(axis=1, keepdims=True), atol=1e-5)


# ---- gradients, with Caffe's checker settings (stepsize 1e-2, threshold 1e-3)
@pytest.mark.parametrize("fields", [{}, {"normalize_variance": False}, {"across_channels": True}],
                         ids=["default", "mean_only", "across_channels"])
def test_gradient_caffe_cases(mode, fields):
    # Caffe's TestGradient, ...MeanOnly, ...AcrossChannels on 2x3x4x5 Gaussian values;
    # smaller here (the exhaustive check runs two forwards per pair of values).
    bottom = blob_from(np.random.default_rng(1701).standard_normal((1, 2, 2, 3)))
    GradientChecker(1e-2, 1e-3).check_gradient_exhaustive(mvn(**fields), [bottom], [Blob()])


@given(mvn_cases(min_values=3, wide=False))
def test_gradient_property(mode, case):
    fields, x = case
    GradientChecker(1e-2, 1e-3).check_gradient(mvn(**fields), [blob_from(x)], [Blob()])


# ---- the OpenCL twin
@given(mvn_cases(min_values=1), st.floats(1e-9, 1.0))
def test_engines_agree(gpu_only, case, eps):
    fields, x = case
    compare_engines(layer_param("MVN", mvn_param={**fields, "eps": eps}), [x])


@pytest.mark.opencl
def test_engines_agree_on_a_large_group(gpu_only):
    # One group of 3000 values: many per work-item, so the group's strided loops and
    # the tree reduction both matter.
    x = np.random.default_rng(2).standard_normal((2, 3, 30, 100)) * 5 + 3
    compare_engines(layer_param("MVN", mvn_param={"across_channels": True}), [x])


@pytest.mark.parametrize("fields", [{}, {"normalize_variance": False}])
def test_data_stays_on_the_device(gpu_only, fields):
    # With the bottom data and the top diff only on the device (as between layers of a
    # net), forward and backward copy nothing either way: a host read would be counted.
    layer = mvn(**fields)
    bottom, top = blob_from(np.random.default_rng(0).standard_normal((2, 3, 4, 5))), Blob()
    layer.setup([bottom], [top])
    bottom.mutable_gpu_data()
    top.mutable_gpu_diff()
    before = dict(SyncedMemory.transfers)
    layer.forward([bottom], [top])
    layer.backward([top], [True], [bottom])
    assert SyncedMemory.transfers == before


# ---- bad input
def test_more_than_four_axes(mode):
    with pytest.raises(MinicaffeError, match="MVN layer 'mvn': .*5 axes"):
        mvn().setup([blob_from(np.zeros((1, 2, 3, 4, 5)))], [Blob()])


def test_blob_counts(mode):
    x = blob_from(np.zeros((1, 3, 2, 2)))
    with pytest.raises(MinicaffeError, match="mvn"):
        mvn().setup([x, x], [Blob()])
    with pytest.raises(MinicaffeError, match="mvn"):
        mvn().setup([x], [Blob(), Blob()])
