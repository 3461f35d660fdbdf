"""Reduction: known values for every operation, shapes by axis, gradients (Caffe's checker
settings), engines agree, bad input. Tests taking `mode` run once per engine."""
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
from tests.strategies import blob_from, layer_param, shapes

X = np.float32([[1, -2, 3], [-4, 5, -6]])
OPS = ["SUM", "ASUM", "SUMSQ", "MEAN"]


def reduction(name="reduction", **fields):
    return create_layer(layer_param("Reduction", name=name, reduction_param=fields))


# Rows of X by hand: sums 2 and -5, |x| sums 6 and 15, squares 1+4+9 = 14 and 16+25+36 = 77.
# dx per row for dy = (1, -1), coeff 2: SUM 2 dy, ASUM 2 dy sign(x), SUMSQ 4 dy x, MEAN 2 dy / 3.
@pytest.mark.parametrize("op, y, dx", [
    ("SUM", [4, -10], [[2, 2, 2], [-2, -2, -2]]),
    ("ASUM", [12, 30], [[2, -2, 2], [2, -2, 2]]),
    ("SUMSQ", [28, 154], [[4, -8, 12], [16, -20, 24]]),
    ("MEAN", [4 / 3, -10 / 3], [[2 / 3] * 3, [-2 / 3] * 3]),
])
def test_known_values(mode, op, y, dx):
    x, top, layer = blob_from(X), Blob(), reduction(operation=op, axis=1, coeff=2.0)
    layer.setup([x], [top])
    layer.forward([x], [top])
    assert top.shape == (2,)
    np.testing.assert_allclose(top.cpu_data(), y, rtol=1e-6)
    top.diff = [1.0, -1.0]
    layer.backward([top], [True], [x])
    np.testing.assert_allclose(x.cpu_diff(), dx, rtol=1e-6)


def test_defaults_sum_everything_to_a_scalar(mode):
    x, top, layer = blob_from(X), Blob(), reduction()  # SUM, axis 0, coeff 1
    layer.setup([x], [top])
    layer.forward([x], [top])
    assert top.shape == ()
    assert float(top.cpu_data()) == -3.0


@pytest.mark.parametrize("axis, shape", [(0, ()), (1, (2,)), (2, (2, 3)), (3, (2, 3, 4)),
                                         (-1, (2, 3, 4)), (-4, ())])
def test_top_keeps_the_axes_before_axis(mode, axis, shape):
    x, top = blob_from(np.ones((2, 3, 4, 5))), Blob()
    layer = reduction(axis=axis)
    layer.setup([x], [top])
    layer.forward([x], [top])
    assert top.shape == shape
    np.testing.assert_array_equal(top.cpu_data(), np.full(shape, 120 // max(1, int(np.prod(shape)))))


@st.composite
def reduction_cases(draw, max_side=3):
    shape = draw(shapes(min_axes=1, max_axes=3, max_side=max_side))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    # Magnitudes kept away from 0: ASUM's gradient has a kink there.
    x = rng.uniform(0.1, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    fields = {"operation": draw(st.sampled_from(OPS)),
              "axis": draw(st.integers(-len(shape), len(shape) - 1))}
    if draw(st.booleans()):
        fields["coeff"] = draw(st.sampled_from([-1.5, 0.5, 2.0]))
    return blob_from(x), fields


@given(case=reduction_cases())
def test_forward_matches_float64(mode, case):
    bottom, fields = case
    top, layer = Blob(), reduction(**fields)
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    axis = fields["axis"] % bottom.num_axes
    x = bottom.cpu_data().astype(np.float64)
    term = {"SUM": x, "MEAN": x, "ASUM": np.abs(x), "SUMSQ": x * x}[fields["operation"]]
    tail = tuple(range(axis, x.ndim))
    expected = term.sum(axis=tail) * fields.get("coeff", 1.0)
    if fields["operation"] == "MEAN":
        expected /= int(np.prod(x.shape[axis:]))
    np.testing.assert_allclose(top.cpu_data(), expected, rtol=1e-5, atol=1e-5)


@given(case=reduction_cases(max_side=2))
def test_gradient(mode, case):
    bottom, fields = case
    GradientChecker(1e-2, 2e-3).check_gradient_exhaustive(reduction(**fields), [bottom], [Blob()])


@pytest.mark.opencl
@given(case=reduction_cases(max_side=5))
def test_engines_agree(case):
    bottom, fields = case
    compare_engines(layer_param("Reduction", reduction_param=fields), [bottom.cpu_data()])


@pytest.mark.opencl
def test_engines_agree_on_a_long_row():
    # One row of 5000 values: shared out among a whole work-group on the device.
    x = np.random.default_rng(3).uniform(-1, 1, (2, 5000))
    compare_engines(layer_param("Reduction", reduction_param={"operation": "SUMSQ", "axis": 1}), [x])


@pytest.mark.opencl
def test_device_path_makes_no_host_copies():
    x, top, layer = blob_from(X), Blob(), reduction(operation="ASUM", axis=1)
    with common.using_mode(common.GPU):
        layer.setup([x], [top])
        top.diff = [1.0, 2.0]
        top.gpu_diff(), x.gpu_data()
        before = dict(SyncedMemory.transfers)
        layer.forward([x], [top])
        layer.backward([top], [True], [x])
        assert SyncedMemory.transfers == before
    np.testing.assert_array_equal(x.cpu_diff(), [[1, -1, 1], [-2, 2, -2]])


@pytest.mark.parametrize("axis", [2, -3])
def test_bad_axis(mode, axis):
    with pytest.raises(MinicaffeError, match=rf"Reduction layer 'red_bad': axis {axis} is out of "
                                             r"range for bottom .* of shape \(2, 3\)"):
        reduction("red_bad", axis=axis).setup([blob_from(X)], [Blob()])


def test_bad_blob_count(mode):
    with pytest.raises(MinicaffeError, match=r"Reduction layer 'red_bad' takes exactly 1 top"):
        reduction("red_bad").setup([blob_from(X)], [Blob(), Blob()])
