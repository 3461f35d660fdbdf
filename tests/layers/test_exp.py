"""Exp: known values for each parameter, gradients (Caffe's checker settings and
variants), in-place use, engines agree, bad bases. Tests taking `mode` run once per engine
(numpy, OpenCL)."""
import math

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
from tests.strategies import blob_from, blobs, layer_param, run_one


def exp_param(base=None, scale=None, shift=None, name=None):
    """Unset arguments stay unset, so their defaults (base -1, scale 1, shift 0) apply."""
    fields = {k: v for k, v in (("base", base), ("scale", scale), ("shift", shift)) if v is not None}
    return layer_param("Exp", name=name, **({"exp_param": fields} if fields else {}))


def exp(**kwargs):
    return create_layer(exp_param(**kwargs))


# Caffe's eight variants: base e (-1) or 2, scale 1 or 3, shift 0 or 1.
variants = st.tuples(st.sampled_from([None, -1.0, 2.0]), st.sampled_from([None, 1.0, 3.0]),
                     st.sampled_from([None, 0.0, 1.0]))


@pytest.mark.parametrize("params, x, expected, slope", [
    # Defaults: y = e^x; dy/dx = y.
    ({}, [0.0, 1.0, math.log(2.0)], [1.0, math.e, 2.0], 1.0),
    # base -1 stands for e; shift 1 multiplies by e.
    ({"base": -1.0, "shift": 1.0}, [0.0, -1.0, math.log(2.0)], [math.e, 1.0, 2 * math.e], 1.0),
    # 2^(3x + 1): x = 0 -> 2, x = 1 -> 16, x = -1/3 -> 1; dy/dx = y 3 ln 2.
    ({"base": 2.0, "scale": 3.0, "shift": 1.0}, [0.0, 1.0, -1 / 3], [2.0, 16.0, 1.0], 3 * math.log(2)),
    # 10^(x / 2): x = 2 -> 10, x = -2 -> 0.1, x = 0 -> 1; dy/dx = y ln(10) / 2.
    ({"base": 10.0, "scale": 0.5}, [2.0, -2.0, 0.0], [10.0, 0.1, 1.0], math.log(10) / 2),
    # Base 1 and scale 0 give the constant base^shift, with gradient 0.
    ({"base": 1.0, "shift": 3.0}, [-5.0, 0.0, 5.0], [1.0, 1.0, 1.0], 0.0),
    ({"base": 2.0, "scale": 0.0, "shift": 3.0}, [-5.0, 0.0, 5.0], [8.0, 8.0, 8.0], 0.0),
])
def test_known_values(mode, params, x, expected, slope):
    y, dx = run_one(exp(**params), blob_from(x), Blob(), [2.0] * 3)
    np.testing.assert_allclose(y, expected, rtol=2e-6)
    np.testing.assert_allclose(dx, 2.0 * np.multiply(expected, slope), rtol=2e-6, atol=1e-30)


@given(bottom=blobs(max_side=4, low=-1.5, high=1.5), params=variants)
def test_gradient(mode, bottom, params):
    # Caffe's TestExpGradient*: stepsize 1e-2, threshold 1e-3, no kink.
    base, scale, shift = params
    checker = GradientChecker(1e-2, 1e-3)
    checker.check_gradient_eltwise(exp(base=base, scale=scale, shift=shift), [bottom], [Blob()])


@given(bottom=blobs(low=-3.0, high=3.0), params=variants, seed=st.integers(0, 2**31 - 1))
def test_in_place_matches_out_of_place(mode, bottom, params, seed):
    base, scale, shift = params
    x = bottom.cpu_data().copy()
    dy = np.random.default_rng(seed).uniform(-1, 1, x.shape).astype(np.float32)
    y, dx = run_one(exp(base=base, scale=scale, shift=shift), blob_from(x), Blob(), dy)
    y_in, dx_in = run_one(exp(base=base, scale=scale, shift=shift), bottom, bottom, dy)
    np.testing.assert_array_equal(y_in, y)
    np.testing.assert_array_equal(dx_in, dx)


@given(bottom=blobs(low=-3.0, high=3.0), params=variants)
def test_matches_the_power_it_stands_for(mode, bottom, params):
    # Caffe's TestExpLayer*: y = base^(shift + scale x), computed here in float64 by pow,
    # against the layer's folded form outer * exp(inner x) in float32.
    base, scale, shift = params
    layer, top = exp(base=base, scale=scale, shift=shift), Blob()
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    g = math.e if base in (None, -1.0) else base
    power = (shift or 0.0) + (1.0 if scale is None else scale) * bottom.cpu_data().astype(np.float64)
    np.testing.assert_allclose(top.cpu_data(), np.power(g, power), rtol=1e-5)


@pytest.mark.opencl
@given(bottom=blobs(low=-3.0, high=3.0),
       params=st.one_of(variants, st.tuples(st.floats(0.25, 10.0), st.floats(-2.0, 2.0),
                                            st.floats(-2.0, 2.0))),
       seed=st.integers(0, 2**31 - 1))
def test_engines_agree(bottom, params, seed):
    # exp may differ by a few ulps between numpy and OpenCL: the default tolerance.
    base, scale, shift = params
    compare_engines(exp_param(base, scale, shift), [bottom.cpu_data()], seed=seed)


@pytest.mark.opencl
@pytest.mark.parametrize("in_place", [False, True])
def test_device_path_makes_no_host_copies(in_place):
    bottom = blob_from([[0.0, 1.0], [-1 / 3, 2.0]])
    top = bottom if in_place else Blob()
    layer = exp(base=2.0, scale=3.0, shift=1.0)
    with common.using_mode(common.GPU):
        layer.setup([bottom], [top])
        top.diff = [[1, 1], [1, 1]]
        top.gpu_diff(), bottom.gpu_data()  # the inputs are on the device ...
        before = dict(SyncedMemory.transfers)
        layer.forward([bottom], [top])
        layer.backward([top], [True], [bottom])
        assert SyncedMemory.transfers == before  # ... and everything stays there
    y = np.float64([[2, 16], [1, 128]])
    np.testing.assert_allclose(bottom.cpu_diff(), y * 3 * math.log(2), rtol=2e-6)


@pytest.mark.parametrize("base", [0.0, -2.0, -0.5, "Infinity", "NaN"])  # JSON spells inf, nan
def test_bad_base(mode, base):
    # Caffe: a base other than -1 must be > 0, and log(base) finite.
    layer = create_layer(exp_param(base=base, name="exp_bad"))
    with pytest.raises(MinicaffeError, match=r"Exp layer 'exp_bad': exp_param base must be "
                                             r"positive and finite, or -1 for e; got"):
        layer.setup([Blob(2)], [Blob()])


def test_bad_blob_count(mode):
    layer = create_layer(exp_param(name="exp_bad"))
    with pytest.raises(MinicaffeError, match=r"Exp layer 'exp_bad' takes exactly 1 top"):
        layer.setup([Blob(2)], [])
