"""Log: known values for each base/scale/shift form, gradients (Caffe's checker: stepsize
1e-2, threshold 1e-2, element-wise, on Caffe's five settings), engines agree, bad params.
Tests taking `mode` run once per engine (numpy, OpenCL)."""
import math

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

# Caffe's test settings (base, scale, shift): natural log, base 2, with a shift, a scale, both.
CAFFE_SETTINGS = [(-1.0, 1.0, 0.0), (2.0, 1.0, 0.0), (2.0, 1.0, 1.0), (2.0, 3.0, 0.0), (2.0, 3.0, 1.0)]


def log_layer(base=-1.0, scale=1.0, shift=0.0, name="log"):
    return create_layer(layer_param("Log", name, log_param={"base": base, "scale": scale, "shift": shift}))


@pytest.mark.parametrize("params, x, y, dydx", [
    # ln e = 1, ln 1 = 0, d ln x / dx = 1/x
    ((-1.0, 1.0, 0.0), [math.e, 1.0, 0.5], [1.0, 0.0, math.log(0.5)], [1 / math.e, 1.0, 2.0]),
    # log2(3 x + 1): x = 1 -> log2 4 = 2, x = 5 -> log2 16 = 4, x = 0 -> 0;
    # derivative 3 / ((3 x + 1) ln 2)
    ((2.0, 3.0, 1.0), [1.0, 5.0, 0.0], [2.0, 4.0, 0.0],
     [3 / (4 * math.log(2)), 3 / (16 * math.log(2)), 3 / math.log(2)]),
    # log10(x): 100 -> 2, 0.001 -> -3
    ((10.0, 1.0, 0.0), [100.0, 0.001], [2.0, -3.0], [1 / (100 * math.log(10)), 1000 / math.log(10)]),
])
def test_known_values(mode, params, x, y, dydx):
    top_y, dx = run_one(log_layer(*params), blob_from(x), Blob(), np.full(len(x), 2.0))
    np.testing.assert_allclose(top_y, y, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx, 2 * np.array(dydx), rtol=1e-5)


def test_outside_the_domain_gives_nan_and_minus_infinity_silently(mode):
    # As in Caffe: no error, the float results of log(0) and log(-1).
    y, _ = run_one(log_layer(), blob_from([0.0, -1.0, 1.0]), Blob(), np.ones(3))
    assert y[0] == -np.inf and np.isnan(y[1]) and y[2] == 0


@given(bottom=blobs(max_side=4, low=-2.0, high=2.0), params=st.sampled_from(CAFFE_SETTINGS))
def test_gradient(mode, bottom, params):
    # Caffe's inputs are exp(gaussian): positive, so every setting is inside its domain.
    bottom.mutable_cpu_data()[...] = np.exp(bottom.cpu_data())
    GradientChecker(1e-2, 1e-2).check_gradient_eltwise(log_layer(*params), [bottom], [Blob()])


@pytest.mark.opencl
@given(bottom=blobs(max_side=5, low=0.05, high=10.0),
       params=st.sampled_from(CAFFE_SETTINGS + [(0.5, 0.25, 2.0)]), seed=st.integers(0, 2**31 - 1))
def test_engines_agree(bottom, params, seed):
    base, scale, shift = params
    param = layer_param("Log", log_param={"base": base, "scale": scale, "shift": shift})
    compare_engines(param, [bottom.cpu_data()], seed=seed)


@pytest.mark.parametrize("base, message", [
    (0.0, "must be strictly positive"), (-2.0, "must be strictly positive"),
    ("NaN", "must be strictly positive"), (1.0, "both must be finite"),
    ("Infinity", "both must be finite"),
])
def test_bad_base(base, message):
    layer = log_layer(base=base, name="log_bad")
    with pytest.raises(MinicaffeError, match=f"Log layer 'log_bad': log_param.base.*{message}"):
        layer.setup([blob_from([1.0])], [Blob()])


def test_bad_blob_count():
    with pytest.raises(MinicaffeError, match=r"Log layer 'log_bad' takes exactly 1 bottom"):
        log_layer(name="log_bad").setup([blob_from([1.0]), blob_from([1.0])], [Blob()])
