"""PReLU: the default slopes, hand-computed forward and slope gradient, agreement with
ReLU's fixed slope, gradients (Caffe's checker: stepsize 1e-2, threshold 1e-3, kink 0 +-
0.01, exhaustive, slopes checked too), in-place use, the OpenCL twin against numpy (the
slope sums on the device), bad input. Tests taking `mode` run once per engine."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicaffe import common
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.syncedmem import SyncedMemory
from minicaffe.testing import GradientChecker
from minicaffe.testing.engines import compare_engines
from tests.strategies import blob_from, blobs, layer_param


def prelu(name="prelu", **fields):
    return create_layer(layer_param("PReLU", name, prelu_param=fields))


def run(layer, bottom, top, dy):
    """setup, forward, backward from dy (slope diffs cleared first): (y, dx, slope diff)."""
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    y = top.cpu_data().copy()
    top.diff = dy
    layer.blobs[0].diff = 0
    layer.backward([top], [True], [bottom])
    return y, bottom.cpu_diff().copy(), layer.blobs[0].cpu_diff().copy()


@pytest.mark.parametrize("shared, shape", [(False, (3,)), (True, ())])
def test_default_slopes_are_a_quarter(mode, shared, shape):
    layer = prelu(channel_shared=shared)
    layer.setup([blob_from(np.ones((2, 3, 4)))], [Blob()])
    assert len(layer.blobs) == 1 and layer.blobs[0].shape == shape
    assert np.all(layer.blobs[0].cpu_data() == 0.25)
    assert layer.param_propagate_down == [True]


def test_known_values(mode):
    # x (N=2, C=2, 2 positions); slopes a = [0.5, -2]; dE/dy = 1 everywhere.
    x = [[[1.0, -2.0], [-1.0, 3.0]],
         [[-4.0, 0.0], [2.0, -0.5]]]
    layer, bottom, top = prelu(), blob_from(x), Blob()
    layer.setup([bottom], [top])
    layer.blobs[0].data = [0.5, -2.0]
    y, dx, da = run(layer, bottom, top, np.ones((2, 2, 2)))
    # y = x where x > 0, a_c x elsewhere
    np.testing.assert_array_equal(y, [[[1.0, -1.0], [2.0, 3.0]], [[-2.0, 0.0], [2.0, 1.0]]])
    # dE/dx = 1 where x > 0, a_c where x <= 0 (0 counts as negative, as in Caffe)
    np.testing.assert_array_equal(dx, [[[1.0, 0.5], [-2.0, 1.0]], [[0.5, 0.5], [1.0, -2.0]]])
    # dE/da_c = sum of x over the x <= 0 of channel c: c0: -2 - 4 + 0, c1: -1 - 0.5
    np.testing.assert_array_equal(da, [-6.0, -1.5])
    # Shared: one slope over everything, gradient -7.5.
    shared = prelu(channel_shared=True)
    shared.setup([bottom], [Blob()])
    shared.blobs[0].data = 0.5
    _, _, da = run(shared, blob_from(x), Blob(), np.ones((2, 2, 2)))
    assert da.shape == () and da == -7.5


def test_slope_gradient_accumulates_and_respects_flags(mode):
    bottom, top = blob_from(np.arange(-6.0, 6.0).reshape(2, 3, 2)), Blob()
    layer = prelu()
    y, dx, da = run(layer, bottom, top, np.ones((2, 3, 2)))
    np.testing.assert_array_equal(da, [-11.0, -7.0, -3.0])  # per channel: -6-5+0, -4-3, -2-1
    layer.backward([top], [True], [bottom])  # a second backward adds to the slope diff
    np.testing.assert_array_equal(layer.blobs[0].cpu_diff(), 2 * da)
    layer.param_propagate_down = [False]
    bottom.diff = 7.0
    layer.backward([top], [False], [bottom])
    np.testing.assert_array_equal(layer.blobs[0].cpu_diff(), 2 * da)
    assert np.all(bottom.cpu_diff() == 7.0)


def test_matches_relu_with_a_quarter_slope(mode):
    # Caffe's TestPReLUConsistencyReLU: the default PReLU is ReLU with negative_slope 0.25.
    rng = np.random.default_rng(5)
    x, dy = rng.normal(size=(2, 3, 4, 5)), rng.normal(size=(2, 3, 4, 5))
    y, dx, _ = run(prelu(), blob_from(x), Blob(), dy)
    relu = create_layer(layer_param("ReLU", relu_param={"negative_slope": 0.25}))
    bottom, top = blob_from(x), Blob()
    relu.setup([bottom], [top])
    relu.forward([bottom], [top])
    top.diff = dy
    relu.backward([top], [True], [bottom])
    np.testing.assert_array_equal(y, top.cpu_data())
    np.testing.assert_array_equal(dx, bottom.cpu_diff())


def test_filler_and_given_slopes_are_used(mode):
    layer = prelu(filler={"type": "constant", "value": -0.5})
    layer.setup([blob_from(np.ones((1, 4)))], [Blob()])
    assert np.all(layer.blobs[0].cpu_data() == -0.5)
    param = layer_param("PReLU", "given", blobs=[{"shape": {"dim": [2]}, "data": [0.1, 0.3]}])
    layer, top = create_layer(param), Blob()
    layer.setup([blob_from([[-1.0, -1.0]])], [top])
    layer.forward([blob_from([[-1.0, -1.0]])], [top])
    np.testing.assert_allclose(top.cpu_data(), [[-0.1, -0.3]])


@st.composite
def prelu_cases(draw):
    """Blobs of 2-4 axes and at most 24 values (the exhaustive check is quadratic in the
    count: Caffe's 2x3x4x5 would take minutes here), slopes drawn as Caffe's gaussian
    filler would, shared or per channel."""
    shape = draw(st.lists(st.integers(1, 3), min_size=2, max_size=4).map(tuple)
                 .filter(lambda s: np.prod(s) <= 24))
    shared = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    slopes = rng.normal(size=() if shared else shape[1])
    return draw(blobs(shape=shape, low=-1.0, high=1.0)), shared, slopes


@given(case=prelu_cases())
def test_gradient_exhaustive(mode, case):
    bottom, shared, slopes = case
    layer = prelu(channel_shared=shared)
    layer.setup([bottom], [Blob()])
    layer.blobs[0].data = slopes
    checker = GradientChecker(1e-2, 1e-3, 1701, kink=0.0, kink_range=0.01)
    checker.check_gradient_exhaustive(layer, [bottom], [Blob()])


@given(case=prelu_cases(), seed=st.integers(0, 2**31 - 1))
def test_in_place_matches_out_of_place(mode, case, seed):
    bottom, shared, slopes = case
    x = bottom.cpu_data().copy()
    dy = np.random.default_rng(seed).uniform(-1, 1, x.shape)
    results = []
    for top in (Blob(), bottom):  # the second time, top is the bottom blob
        layer = prelu(channel_shared=shared)
        bottom.data = x
        layer.setup([bottom], [top])
        layer.blobs[0].data = slopes
        results.append(run(layer, bottom, top, dy))
    for out_of_place, in_place in zip(*results):
        np.testing.assert_array_equal(in_place, out_of_place)


@pytest.mark.opencl
@given(shape=st.lists(st.integers(1, 6), min_size=2, max_size=4).map(tuple), shared=st.booleans(),
       propagate=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_engines_agree(shape, shared, propagate, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, shape)
    slopes = rng.normal(size=() if shared else shape[1])
    param = layer_param("PReLU", prelu_param={"channel_shared": shared})
    compare_engines(param, [x], params=[slopes], propagate_down=[propagate], seed=seed)


@pytest.mark.opencl
@pytest.mark.parametrize("shared", [False, True])
def test_engines_agree_when_a_slope_sums_more_values_than_a_work_group(shared):
    # 3 channels of 4 x 250 values: each slope's sum spans several rounds of every work-item.
    x = np.random.default_rng(3).uniform(-1, 1, (4, 3, 10, 25))
    param = layer_param("PReLU", prelu_param={"channel_shared": shared})
    slopes = np.float32(0.2) if shared else np.float32([0.2, -0.7, 1.5])
    # Sums of 1000 (per channel) or 3000 (shared) terms, in another order: default tolerance.
    compare_engines(param, [x], params=[slopes])


@pytest.mark.opencl
@pytest.mark.parametrize("in_place", [False, True])
def test_device_path_makes_no_host_copies(in_place):
    x = np.float32([[[-1.0, 2.0], [0.5, -3.0]]])  # N=1, C=2, 2 positions
    bottom = blob_from(x)
    top = bottom if in_place else Blob()
    layer = prelu()
    with common.using_mode(common.GPU):
        layer.setup([bottom], [top])
        top.diff = np.ones_like(x)
        layer.blobs[0].diff = 0
        top.gpu_diff(), bottom.gpu_data(), layer.blobs[0].gpu_data(), layer.blobs[0].gpu_diff()
        before = dict(SyncedMemory.transfers)
        layer.forward([bottom], [top])
        layer.backward([top], [True], [bottom])
        assert SyncedMemory.transfers == before  # the slope sums too stay on the device
    np.testing.assert_array_equal(bottom.cpu_diff(), [[[0.25, 1.0], [1.0, 0.25]]])
    np.testing.assert_array_equal(layer.blobs[0].cpu_diff(), [-1.0, -3.0])


def test_bottom_needs_two_axes():
    with pytest.raises(MinicaffeError, match=r"PReLU layer 'bad': the bottom needs at least 2 axes"):
        prelu("bad").setup([blob_from([1.0, 2.0])], [Blob()])


def test_given_slopes_of_the_wrong_size():
    param = layer_param("PReLU", "bad", blobs=[{"shape": {"dim": [2]}, "data": [0.1, 0.3]}])
    with pytest.raises(MinicaffeError, match=r"PReLU layer 'bad': expected one slope blob of 3 value"):
        create_layer(param).setup([blob_from(np.ones((1, 3)))], [Blob()])
    param.prelu_param.channel_shared = True
    with pytest.raises(MinicaffeError, match=r"PReLU layer 'bad': expected one slope blob of 1 value"):
        create_layer(param).setup([blob_from(np.ones((1, 2)))], [Blob()])


def test_channels_changing_after_setup():
    layer, top = prelu("bad"), Blob()
    layer.setup([blob_from(np.ones((1, 3)))], [top])
    with pytest.raises(MinicaffeError, match=r"PReLU layer 'bad': bottom of shape \(1, 4\) has 4 channels, "
                                             r"but the layer has 3 slopes"):
        layer.forward([blob_from(np.ones((1, 4)))], [top])
    shared, top = prelu("ok", channel_shared=True), Blob()
    shared.setup([blob_from(np.ones((1, 3)))], [top])
    shared.forward([blob_from(-np.ones((2, 5, 2)))], [top])  # one slope fits any shape
    assert np.all(top.cpu_data() == -0.25)


def test_bad_blob_count():
    with pytest.raises(MinicaffeError, match=r"PReLU layer 'bad' takes exactly 1 bottom"):
        prelu("bad").setup([], [Blob()])
