"""Eltwise: PROD / SUM (with coeff) / MAX values, tie rule, gradients, engines agree, errors.
Tests taking `mode` run once per engine (numpy, OpenCL)."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from minicaffe import common
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.syncedmem import SyncedMemory
from minicaffe.testing import GradientChecker
from minicaffe.testing.engines import compare_engines
from tests.strategies import blob_from, blobs, layer_param, shapes


def eltwise(name="eltwise", **fields):
    return create_layer(layer_param("Eltwise", name=name, eltwise_param=fields))


A, B, C = [1.0, 2.0, -3.0], [4.0, -5.0, 6.0], [0.5, 0.5, 2.0]


def run(layer, xs, dy):
    bottom, top = [blob_from(x) for x in xs], Blob()
    layer.setup(bottom, [top])
    layer.forward(bottom, [top])
    top.diff = dy
    layer.backward([top], [True] * len(bottom), bottom)
    return top.cpu_data(), [b.cpu_diff() for b in bottom]


@pytest.mark.parametrize("stable", [True, False])
def test_known_prod(mode, stable):
    y, (da, db, dc) = run(eltwise(operation="PROD", stable_prod_grad=stable), [A, B, C], [1, 1, 2])
    np.testing.assert_allclose(y, [2.0, -5.0, -36.0])
    np.testing.assert_allclose(da, [2.0, -2.5, 24.0])   # dy * b * c
    np.testing.assert_allclose(db, [0.5, 1.0, -12.0])   # dy * a * c
    np.testing.assert_allclose(dc, [4.0, -10.0, -36.0])  # dy * a * b


def test_known_sum_with_coeff(mode):
    y, (da, db, dc) = run(eltwise(operation="SUM", coeff=[1, -0.5, 2]), [A, B, C], [1, 2, 3])
    np.testing.assert_allclose(y, [0.0, 5.5, -2.0])
    np.testing.assert_allclose(da, [1, 2, 3])
    np.testing.assert_allclose(db, [-0.5, -1, -1.5])
    np.testing.assert_allclose(dc, [2, 4, 6])


def test_known_sum_default(mode):
    y, _ = run(eltwise(), [A, B], [0, 0, 0])  # SUM with coeff 1 is the default
    np.testing.assert_allclose(y, [5.0, -3.0, 3.0])


def test_known_max(mode):
    y, (da, db, dc) = run(eltwise(operation="MAX"), [A, B, C], [1, 2, 3])
    np.testing.assert_allclose(y, [4.0, 2.0, 6.0])
    np.testing.assert_allclose(da, [0, 2, 0])
    np.testing.assert_allclose(db, [1, 0, 3])
    np.testing.assert_allclose(dc, [0, 0, 0])


def test_max_ties_follow_caffe(mode):
    # Bottoms 0 and 1: ties go to 1 (a > b ? 0 : 1). From bottom 2 on: strictly greater only.
    layer = eltwise(operation="MAX")
    y, diffs = run(layer, [[1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]], [1, 1, 1])
    np.testing.assert_array_equal(layer.max_idx.cpu_data(), [1, 0, 1])
    np.testing.assert_array_equal(np.stack(diffs), [[0, 1, 0], [1, 0, 1], [0, 0, 0]])


def test_max_with_nan_copies_the_winners_value_as_caffe_does(mode):
    # Caffe's rule `a > b ? a : b` (then `x_k > y` for k >= 2): a comparison with NaN is
    # false, so NaN in bottom 0 loses to bottom 1, NaN in bottom 1 wins over bottom 0,
    # and a NaN running max is never replaced by a later bottom.
    nan = float("nan")
    layer = eltwise(operation="MAX")
    y, diffs = run(layer, [[nan, 1.0, 3.0, 0.0], [2.0, nan, nan, 0.0], [0.0, 5.0, 4.0, nan]], [1, 1, 1, 1])
    np.testing.assert_array_equal(y, [2.0, nan, nan, 0.0])
    np.testing.assert_array_equal(layer.max_idx.cpu_data(), [1, 1, 1, 1])
    np.testing.assert_array_equal(np.stack(diffs), [[0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
    y, _ = run(eltwise(operation="MAX"), [[nan, 1.0], [2.0, -1.0]], [1, 1])
    np.testing.assert_array_equal(y, [2.0, 1.0])  # np.maximum would give [nan, 1]


@st.composite
def eltwise_cases(draw):
    shape = draw(shapes(min_axes=1, max_axes=4, max_side=3))
    k = draw(st.integers(2, 4))
    bottoms = [draw(blobs(shape=shape)) for _ in range(k)]
    op = draw(st.sampled_from(["PROD", "SUM", "MAX"]))
    fields = {"operation": op}
    if op == "PROD":
        fields["stable_prod_grad"] = draw(st.booleans())
    if op == "SUM" and draw(st.booleans()):
        fields["coeff"] = draw(st.lists(st.sampled_from([-2.0, -0.5, 0.0, 1.0, 1.5, 3.0]),
                                        min_size=k, max_size=k))
    return bottoms, fields


@given(case=eltwise_cases())
def test_gradient(mode, case):
    bottoms, fields = case
    if fields["operation"] == "MAX":
        # Caffe's TestMaxGradient uses a smaller step; a tie closer than the step makes the
        # finite difference straddle the switch from one bottom to another, so avoid it.
        stacked = np.sort(np.stack([b.cpu_data() for b in bottoms]), axis=0)
        assume(np.all(stacked[-1] - stacked[-2] > 1e-3))
        checker = GradientChecker(1e-4, 1e-3)
    else:
        checker = GradientChecker(1e-2, 1e-3)
    checker.check_gradient_eltwise(eltwise(**fields), bottoms, [Blob()])


@given(case=eltwise_cases())
def test_forward_matches_numpy(mode, case):
    bottoms, fields = case
    top, layer = Blob(), eltwise(**fields)
    layer.setup(bottoms, [top])
    layer.forward(bottoms, [top])
    x = np.stack([b.cpu_data() for b in bottoms]).astype(np.float64)
    coeff = np.reshape(fields.get("coeff", [1.0] * len(bottoms)), (-1,) + (1,) * (x.ndim - 1))
    expected = {"PROD": x.prod(0), "SUM": (coeff * x).sum(0), "MAX": x.max(0)}[fields["operation"]]
    np.testing.assert_allclose(top.cpu_data(), expected, rtol=1e-5, atol=1e-5)


@given(shape=shapes(max_axes=3, max_side=3), k=st.integers(2, 4), data=st.data())
def test_stable_and_unstable_prod_agree_away_from_zero(mode, shape, k, data):
    bottoms = [data.draw(blobs(shape=shape, low=0.5, high=2.0)) for _ in range(k)]
    dy = np.ones(shape, dtype=np.float32)
    results = []
    for stable in (True, False):
        _, diffs = run(eltwise(operation="PROD", stable_prod_grad=stable),
                       [b.cpu_data() for b in bottoms], dy)
        results.append(np.stack(diffs))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5)


@pytest.mark.opencl
@given(case=eltwise_cases(), ties=st.booleans(), data=st.data())
def test_engines_agree(case, ties, data):
    bottoms, fields = case
    x = [b.cpu_data() for b in bottoms]
    if ties:  # whole numbers in [-2, 2]: MAX meets many ties, PROD exact zeros
        x = [np.round(xk) for xk in x]
    down = data.draw(st.lists(st.booleans(), min_size=len(x), max_size=len(x)))
    # MAX only copies values (the mask decides where dy goes): exact. PROD and SUM multiply
    # and add in float32 on both, but OpenCL may fuse a * b + c: the default tolerance.
    exact = fields["operation"] == "MAX"
    param = layer_param("Eltwise", eltwise_param=fields)
    compare_engines(param, x, propagate_down=down, **({"rtol": 0, "atol": 0} if exact else {}))


@pytest.mark.opencl
@pytest.mark.parametrize("operation", ["PROD", "SUM", "MAX"])
def test_device_path_makes_no_host_copies(operation):
    bottom = [blob_from(A), blob_from(B), blob_from(C)]
    top, layer = Blob(), eltwise(operation=operation)
    with common.using_mode(common.GPU):
        layer.setup(bottom, [top])
        top.diff = [1, 2, 3]
        top.gpu_diff(), [b.gpu_data() for b in bottom]  # the inputs are on the device ...
        before = dict(SyncedMemory.transfers)
        layer.forward(bottom, [top])
        layer.backward([top], [True] * 3, bottom)
        assert SyncedMemory.transfers == before  # ... and everything stays there
    expected = {"PROD": [2.0, -5.0, -36.0], "SUM": [5.5, -2.5, 5.0], "MAX": [4.0, 2.0, 6.0]}
    np.testing.assert_allclose(top.cpu_data(), expected[operation])


@pytest.mark.parametrize("shapes_, fields, message", [
    ([(2, 3), (2, 4)], {}, r"same shape: bottom 0 has shape \(2, 3\), bottom 1 has shape \(2, 4\)"),
    ([(2, 3), (2, 3), (3, 2)], {"operation": "MAX"}, r"bottom 2 has shape \(3, 2\)"),
    ([(2,), (2,), (2,)], {"coeff": [1, 2]}, r"one coeff per bottom .* 2 coeff\(s\) for 3 bottom"),
    ([(2,), (2,)], {"operation": "PROD", "coeff": [1, 2]}, r"coeff is only for operation SUM"),
])
def test_bad_input(mode, shapes_, fields, message):
    layer = eltwise("eltwise_bad", **fields)
    with pytest.raises(MinicaffeError, match=r"Eltwise layer 'eltwise_bad': .*" + message):
        layer.setup([Blob(s) for s in shapes_], [Blob()])


def test_needs_two_bottoms(mode):
    with pytest.raises(MinicaffeError,
                       match=r"Eltwise layer 'eltwise_bad' takes at least 2 bottom"):
        eltwise("eltwise_bad").setup([Blob(2)], [Blob()])
