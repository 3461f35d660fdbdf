"""Power: known values for each of Caffe's special cases, gradients (Caffe's checker:
stepsize 1e-3, threshold 1e-2, kink 0 +- 0.01, element-wise, on Caffe's settings), engines
agree, bad input. Tests taking `mode` run once per engine (numpy, OpenCL)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.testing import GradientChecker
from minicaffe.testing.engines import compare_engines
from tests.strategies import blob_from, blobs, layer_param, run_one

# (power, scale, shift): Caffe's gradient tests (a general power, shift 0, power 0, 1, 2,
# and 2 with scale 0.5), and scale 0 with power 3 (the constant shift^power).
CAFFE_SETTINGS = [(0.37, 0.83, -2.4), (0.37, 0.83, 0.0), (0.0, 0.83, -2.4), (1.0, 0.83, -2.4),
                  (2.0, 0.83, -2.4), (2.0, 0.5, -2.4), (3.0, 0.0, 1.5)]


def power_layer(power=1.0, scale=1.0, shift=0.0, name="power"):
    return create_layer(layer_param("Power", name, power_param={"power": power, "scale": scale,
                                                                "shift": shift}))


def into_domain(x, power, scale, shift):
    """Caffe's trick for fractional powers: reflect x about -shift/scale so that
    scale x + shift >= 0 (a negative base has no real fractional power)."""
    if power in (0.0, 1.0, 2.0) or scale == 0:
        return x.copy()
    low = -shift / scale
    return np.where(x < low, 2 * low - x, x)


@pytest.mark.parametrize("params, x, y, dydx", [
    # (3x + 1)^2: x = 1 -> 16, slope 2*3*(3x+1) = 24; x = -1 -> 4, slope -12;
    # x = -1/2 -> 1/4, slope -3
    ((2.0, 3.0, 1.0), [1.0, -1.0, -0.5], [16.0, 4.0, 0.25], [24.0, -12.0, -3.0]),
    # sqrt(x): 4 -> 2, slope 1/(2 sqrt x) = 1/4; 0.25 -> 0.5, slope 1
    ((0.5, 1.0, 0.0), [4.0, 0.25], [2.0, 0.5], [0.25, 1.0]),
    # (x/2 + 1)^-1: x = 2 -> 1/2, slope -1/2 (x/2+1)^-2 = -1/8
    ((-1.0, 0.5, 1.0), [2.0, 0.0], [0.5, 1.0], [-0.125, -0.5]),
    # power 1: 2x - 3, slope 2
    ((1.0, 2.0, -3.0), [0.0, 4.0], [-3.0, 5.0], [2.0, 2.0]),
    # power 0: 1 whatever x (even NaN), slope 0
    ((0.0, 2.0, -3.0), [0.0, np.nan], [1.0, 1.0], [0.0, 0.0]),
    # scale 0: shift^power = 1.5^3 = 3.375, slope 0
    ((3.0, 0.0, 1.5), [7.0, -2.0], [3.375, 3.375], [0.0, 0.0]),
    # the defaults: the identity
    ((1.0, 1.0, 0.0), [-2.5, 3.0], [-2.5, 3.0], [1.0, 1.0]),
])
def test_known_values(mode, params, x, y, dydx):
    top_y, dx = run_one(power_layer(*params), blob_from(x), Blob(), np.full(len(x), 2.0))
    np.testing.assert_allclose(top_y, y, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dx, 2 * np.array(dydx), rtol=1e-6, atol=1e-7)


def test_edges_are_nan_as_in_caffe(mode):
    # sqrt(-1) has no real value; x^3 at x = 0 has slope 0, but Caffe's y / x gives 0/0 = NaN.
    y, _ = run_one(power_layer(0.5), blob_from([-1.0]), Blob(), [1.0])
    assert np.isnan(y[0])
    y, dx = run_one(power_layer(3.0), blob_from([0.0, 2.0]), Blob(), [1.0, 1.0])
    np.testing.assert_array_equal(y, [0.0, 8.0])
    assert np.isnan(dx[0]) and dx[1] == pytest.approx(12.0)


@given(bottom=blobs(max_side=4, low=-2.0, high=2.0), params=st.sampled_from(CAFFE_SETTINGS))
def test_gradient(mode, bottom, params):
    bottom.mutable_cpu_data()[...] = into_domain(bottom.cpu_data(), *params)
    checker = GradientChecker(1e-3, 1e-2, 1701, kink=0.0, kink_range=0.01)
    checker.check_gradient_eltwise(power_layer(*params), [bottom], [Blob()])


@given(bottom=blobs(low=-3.0, high=3.0), params=st.sampled_from(CAFFE_SETTINGS))
def test_matches_the_formula(mode, bottom, params):
    x = into_domain(bottom.cpu_data(), *params).astype(np.float64)
    bottom.mutable_cpu_data()[...] = x
    top = Blob()
    layer = power_layer(*params)
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    power, scale, shift = params
    np.testing.assert_allclose(top.cpu_data(), (scale * x + shift) ** power, rtol=1e-4, atol=1e-5)


@pytest.mark.opencl
@given(bottom=blobs(max_side=5, low=-3.0, high=3.0),
       params=st.sampled_from(CAFFE_SETTINGS + [(-1.5, 2.0, 0.5), (3.0, -1.0, 0.0)]),
       seed=st.integers(0, 2**31 - 1))
def test_engines_agree(bottom, params, seed):
    x = into_domain(bottom.cpu_data(), *params)
    x[np.abs(x * params[1] + params[2]) < 1e-2] = 1.0  # keep off the poles of negative powers
    power, scale, shift = params
    param = layer_param("Power", power_param={"power": power, "scale": scale, "shift": shift})
    compare_engines(param, [x], seed=seed)


def test_bad_blob_count():
    with pytest.raises(MinicaffeError, match=r"Power layer 'power_bad' takes exactly 1 top"):
        power_layer(name="power_bad").setup([blob_from([1.0])], [])
