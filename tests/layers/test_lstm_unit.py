"""LSTMUnit: known values, Caffe's setup and gradient tests (test_lstm_layer.cpp, the
LSTMUnit cases), a fractional cont, engines agree, bad input. Tests taking `mode` run once
per engine (numpy, OpenCL)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.syncedmem import SyncedMemory
from minicaffe.testing import GradientChecker
from minicaffe.testing.engines import compare_engines
from tests.strategies import blob_from, layer_param


def lstm_unit(name="lstm_unit"):
    return create_layer(layer_param("LSTMUnit", name=name))


def unit_bottoms(num, dim, cont, seed=1701):
    """Caffe's fixture: c_prev (1, N, D) and x (1, N, 4D) uniform in [-1, 1], cont (1, N)."""
    rng = np.random.default_rng(seed)
    return [blob_from(rng.uniform(-1, 1, (1, num, dim))),
            blob_from(rng.uniform(-1, 1, (1, num, 4 * dim))),
            blob_from(np.float32(cont).reshape(1, num))]


# Gate inputs chosen so that every activation is a round number:
# sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4, tanh(ln 2) = 3/5.
X = [0.0, math.log(3.0), 0.0, math.log(2.0)]  # i = 1/2, f = 3/4, o = 1/2, g = 3/5


@pytest.mark.parametrize("cont, c, dc_prev, df", [
    (1.0, 0.75 * 2 + 0.5 * 0.6, 0.75, 2 * 0.75 * 0.25),  # inside a sequence
    (0.0, 0.5 * 0.6, 0.0, 0.0),                          # a new sequence: c_prev is cut off
])
def test_known_values(mode, cont, c, dc_prev, df):
    layer, top = lstm_unit(), [Blob(), Blob()]
    bottom = [blob_from([[[2.0]]]), blob_from([[X]]), blob_from([[cont]])]
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    np.testing.assert_allclose(top[0].cpu_data(), [[[c]]], rtol=1e-6)
    np.testing.assert_allclose(top[1].cpu_data(), [[[0.5 * math.tanh(c)]]], rtol=1e-6)
    # dE/dc_t = 1, dE/dh_t = 0: the gradient flows through the cell only, so
    # di' = g i (1 - i) = 0.15, df' = cont c_prev f (1 - f), do' = 0, dg' = i (1 - g^2) = 0.32.
    top[0].diff = np.ones((1, 1, 1), np.float32)
    top[1].diff = np.zeros((1, 1, 1), np.float32)
    layer.backward(top, [True, True, False], bottom)
    np.testing.assert_allclose(bottom[0].cpu_diff(), [[[dc_prev]]], rtol=1e-6)
    np.testing.assert_allclose(bottom[1].cpu_diff(), [[[0.15, df, 0.0, 0.32]]], rtol=1e-6, atol=1e-7)
    # dE/dh_t = 1 alone: also do' = tanh(c) o (1 - o), and the cell gets o (1 - tanh^2 c).
    top[0].diff, top[1].diff = np.zeros((1, 1, 1), np.float32), np.ones((1, 1, 1), np.float32)
    layer.backward(top, [True, True, False], bottom)
    through_h = 0.5 * (1 - math.tanh(c) ** 2)
    np.testing.assert_allclose(bottom[1].cpu_diff()[0, 0, 2], math.tanh(c) * 0.25, rtol=1e-6)
    np.testing.assert_allclose(bottom[0].cpu_diff(), [[[dc_prev * through_h]]], rtol=1e-5)


def test_streams_and_units_are_independent(mode):
    # Stream n of the output depends on stream n of the inputs alone, and the gate blocks
    # are read D apart: run three streams of D = 2 together and each one alone.
    bottom = unit_bottoms(3, 2, [1, 0, 1], seed=5)
    layer, top = lstm_unit(), [Blob(), Blob()]
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    for n in range(3):
        one = [blob_from(b.cpu_data()[:, n:n + 1]) for b in bottom]
        single, out = lstm_unit(), [Blob(), Blob()]
        single.setup(one, out)
        single.forward(one, out)
        np.testing.assert_allclose(out[0].cpu_data(), top[0].cpu_data()[:, n:n + 1], rtol=1e-6)
        np.testing.assert_allclose(out[1].cpu_data(), top[1].cpu_data()[:, n:n + 1], rtol=1e-6)
    # ... and against the equations written out in float64 for stream 0, unit 1.
    x = bottom[1].cpu_data()[0, 0].astype(np.float64)
    i, f, o = (1 / (1 + math.exp(-x[k * 2 + 1])) for k in range(3))
    g = math.tanh(x[7])
    c = f * float(bottom[0].cpu_data()[0, 0, 1]) + i * g
    np.testing.assert_allclose(top[0].cpu_data()[0, 0, 1], c, rtol=1e-5)
    np.testing.assert_allclose(top[1].cpu_data()[0, 0, 1], o * math.tanh(c), rtol=1e-5)


def test_setup_shapes(mode):
    # Caffe's TestLSTMUnitSetUp: N = 3 streams, D = num_output 7.
    bottom, top = unit_bottoms(3, 7, [0, 0, 0]), [Blob(), Blob()]
    lstm_unit().setup(bottom, top)
    assert top[0].shape == top[1].shape == (1, 3, 7)


@pytest.mark.parametrize("cont", [[0, 0, 0], [1, 0, 1]], ids=["zero_cont", "nonzero_cont"])
def test_gradient_caffe(mode, cont):
    # Caffe's TestLSTMUnitGradient and ...NonZeroCont: N = 3, D = 7, checker (1e-2, 1e-3),
    # exhaustive over every element of both tops, for bottom 0 then bottom 1.
    bottom, top = unit_bottoms(3, 7, cont), [Blob(), Blob()]
    layer, checker = lstm_unit(), GradientChecker(1e-2, 1e-3)
    checker.check_gradient_exhaustive(layer, bottom, top, 0)
    checker.check_gradient_exhaustive(layer, bottom, top, 1)


def test_gradient_fractional_cont(mode):
    # cont = 0.5 is where Caffe's CPU code is off (it takes f (1 - f) of the scaled
    # cont f); ours follows the true derivative, which the finite differences check.
    bottom, top = unit_bottoms(3, 2, [0.5, 0.25, 1.0], seed=11), [Blob(), Blob()]
    layer, checker = lstm_unit(), GradientChecker(1e-2, 1e-3)
    checker.check_gradient(layer, bottom, top, 0)
    checker.check_gradient(layer, bottom, top, 1)


@settings(max_examples=4)
@given(num=st.integers(1, 3), dim=st.integers(1, 3), seed=st.integers(0, 2**31 - 1),
       cont=st.lists(st.sampled_from([0.0, 1.0]), min_size=3, max_size=3))
def test_gradient_drawn(mode, num, dim, seed, cont):
    bottom, top = unit_bottoms(num, dim, cont[:num], seed), [Blob(), Blob()]
    layer, checker = lstm_unit(), GradientChecker(1e-2, 1e-3)
    checker.check_gradient(layer, bottom, top, 0)
    checker.check_gradient(layer, bottom, top, 1)


def test_propagate_down_only_bottom_1_leaves_bottom_0_diff(mode):
    bottom, top = unit_bottoms(2, 2, [1, 1]), [Blob(), Blob()]
    layer = lstm_unit()
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    top[0].diff = np.ones((1, 2, 2), np.float32)
    top[1].diff = np.ones((1, 2, 2), np.float32)
    bottom[0].diff = np.full((1, 2, 2), 7.0, np.float32)
    layer.backward(top, [False, True, False], bottom)
    np.testing.assert_array_equal(bottom[0].cpu_diff(), 7.0)
    assert np.all(bottom[1].cpu_diff() != 0)
    bottom[1].diff = np.full((1, 2, 8), 7.0, np.float32)  # and the other way round
    layer.backward(top, [True, False, False], bottom)
    np.testing.assert_array_equal(bottom[1].cpu_diff(), 7.0)
    assert np.all(bottom[0].cpu_diff() != 7.0)


@pytest.mark.opencl
@given(num=st.integers(1, 5), dim=st.integers(1, 6), seed=st.integers(0, 2**31 - 1),
       cont=st.lists(st.sampled_from([0.0, 1.0, 0.5]), min_size=5, max_size=5))
def test_engines_agree(num, dim, seed, cont):
    rng = np.random.default_rng(seed)
    bottoms = [rng.uniform(-3, 3, (1, num, dim)), rng.uniform(-4, 4, (1, num, 4 * dim)),
               np.float32(cont[:num]).reshape(1, num)]
    compare_engines(layer_param("LSTMUnit"), bottoms, top_count=2,
                    propagate_down=[True, True, False], seed=seed)


@pytest.mark.opencl
def test_device_path_makes_no_host_copies(gpu_only):
    bottom, top = unit_bottoms(2, 3, [1, 0]), [Blob(), Blob()]
    layer = lstm_unit()
    layer.setup(bottom, top)
    for t in top:
        t.diff = np.ones((1, 2, 3), np.float32)
        t.gpu_diff()
    for b in bottom:
        b.gpu_data()
    before = dict(SyncedMemory.transfers)
    layer.forward(bottom, top)
    layer.backward(top, [True, True, False], bottom)
    assert SyncedMemory.transfers == before


@pytest.mark.parametrize("shapes, message", [
    ([(1, 3, 2), (1, 3, 8), (3,)], r"bottom 2 .* is cont \(1, N\) but has shape \(3,\)"),
    ([(2, 3, 2), (2, 3, 8), (2, 3)], r"bottom 0 .* has shape \(2, 3, 2\)"),
    ([(1, 3, 2), (1, 2, 8), (1, 3)], r"bottom 1 .* has shape \(1, 2, 8\); N = 3 from bottom 0"),
    ([(1, 3, 2), (1, 3, 6), (1, 3)], r"bottom 1 .* must hold 4 \* D = 8 gate inputs .* got 6"),
    ([(3, 2), (1, 3, 8), (1, 3)], r"bottom 0 .* is c_prev \(1, N, D\) but has shape \(3, 2\)"),
])
def test_bad_shapes(shapes, message):
    bottom = [Blob(s) for s in shapes]
    with pytest.raises(MinicaffeError, match=r"LSTMUnit layer 'unit_bad': " + message):
        lstm_unit("unit_bad").setup(bottom, [Blob(), Blob()])


def test_no_gradient_for_cont(mode):
    bottom, top = unit_bottoms(1, 2, [1]), [Blob(), Blob()]
    layer = lstm_unit("unit_bad")
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    assert not layer.allow_force_backward(2) and layer.allow_force_backward(1)
    with pytest.raises(MinicaffeError, match=r"LSTMUnit layer 'unit_bad': cannot backpropagate "
                                             r"to the sequence continuation indicators"):
        layer.backward(top, [True, True, True], bottom)


def test_bad_blob_count():
    with pytest.raises(MinicaffeError, match=r"LSTMUnit layer 'unit_bad' takes exactly 3 bottom"):
        lstm_unit("unit_bad").setup([Blob((1, 1, 1)), Blob((1, 1, 4))], [Blob(), Blob()])


def test_in_a_net_force_backward_spares_cont(mode):
    # force_backward asks every bottom for a gradient except those a layer refuses: the
    # net runs backward without touching cont. c_prev = 1, x = 0: i = f = o = 1/2, g = 0.
    from google.protobuf import text_format

    from minicaffe.net import Net
    from minicaffe.proto import caffe_pb2
    text = """force_backward: true
        layer { name: "in" type: "Input" top: "c" top: "x" top: "cont" input_param {
          shape { dim: 1 dim: 2 dim: 3 } shape { dim: 1 dim: 2 dim: 12 } shape { dim: 1 dim: 2 } } }
        layer { name: "unit" type: "LSTMUnit" bottom: "c" bottom: "x" bottom: "cont"
                top: "c1" top: "h1" }"""
    net = Net(text_format.Parse(text, caffe_pb2.NetParameter()), "TRAIN")
    out = net.forward(c=np.ones((1, 2, 3)), x=np.zeros((1, 2, 12)), cont=np.ones((1, 2)))
    np.testing.assert_allclose(out["h1"], 0.5 * math.tanh(0.5), rtol=1e-6)
    diffs = net.backward(h1=np.ones((1, 2, 3)), c1=np.zeros((1, 2, 3)))
    through_h = 0.5 * (1 - math.tanh(0.5) ** 2)  # dE/dc via h = o tanh(c)
    expected = np.repeat([0.0, through_h * 0.25, math.tanh(0.5) * 0.25, through_h * 0.5], 3)
    np.testing.assert_allclose(diffs["x"][0, 0], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(diffs["c"], through_h * 0.5, rtol=1e-5)
    np.testing.assert_array_equal(diffs["cont"], 0)
