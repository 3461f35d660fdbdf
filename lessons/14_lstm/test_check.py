"""Lesson 14 check: the cell against minicaffe's LSTMUnit layer and finite differences;
the unrolled LSTM against a reference that runs minicaffe's LSTMUnit step by step (and
against minicaffe's LSTM layer, where the tree has one); the unrolled net through
minicaffe's Net, with its recurrent weight shared across the steps."""
import math

import numpy as np
import pytest
from google.protobuf import text_format

from minicaffe import layer_type_list
from minicaffe.blob import Blob
from minicaffe.layer import create_layer
from minicaffe.net import Net
from minicaffe.proto import caffe_pb2

pytestmark = pytest.mark.lesson14


def run_unit(c_prev, x, cont, dc=None, dh=None):
    """minicaffe's LSTMUnit on (N, D), (N, 4D), (N,) arrays: (c, h) and, given top diffs,
    (dc_prev, dx)."""
    layer = create_layer(caffe_pb2.LayerParameter(name="unit", type="LSTMUnit"))
    bottom = [Blob((1,) + c_prev.shape), Blob((1,) + x.shape), Blob((1,) + cont.shape)]
    for blob, array in zip(bottom, (c_prev, x, cont)):
        blob.data = array[None]
    top = [Blob(), Blob()]
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    c, h = top[0].data[0].copy(), top[1].data[0].copy()
    if dc is None:
        return c, h
    top[0].diff, top[1].diff = dc[None].astype(np.float32), dh[None].astype(np.float32)
    layer.backward(top, [True, True, False], bottom)
    return c, h, bottom[0].diff[0].copy(), bottom[1].diff[0].copy()


def reference_lstm(x, cont, w_xc, b_c, w_hc, h0, c0):
    """Caffe's LSTM written out: gate inputs by numpy, the cell by minicaffe's LSTMUnit."""
    h, c, hs = h0, c0, []
    for t in range(x.shape[0]):
        gates = x[t] @ w_xc.T + b_c + (cont[t][:, None] * h) @ w_hc.T
        c, h = run_unit(c, gates.astype(np.float32), cont[t])
        hs.append(h)
    return np.stack(hs), c


def problem(T=4, N=3, I=2, D=3, seed=0, restart=2):
    """Random inputs and weights; stream 0 starts a new sequence at step `restart`."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    x = rng.uniform(-1, 1, (T, N, I)).astype(f32)
    cont = np.ones((T, N), f32)
    cont[0] = 0  # every stream begins a sequence at t = 0 ...
    cont[restart, 0] = 0  # ... and stream 0 begins another one later
    weights = (rng.uniform(-1, 1, (4 * D, I)).astype(f32), rng.uniform(-0.5, 0.5, 4 * D).astype(f32),
               rng.uniform(-1, 1, (4 * D, D)).astype(f32))
    # A non-zero initial state: cont_0 = 0 must make the first step ignore it.
    state = rng.uniform(-1, 1, (N, D)).astype(f32), rng.uniform(-1, 1, (N, D)).astype(f32)
    return x, cont, weights, state


def test_unit_known_values(lesson):
    # sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4, tanh(ln 2) = 3/5: i = o = 1/2, f = 3/4, g = 3/5.
    x = np.array([[0.0, math.log(3.0), 0.0, math.log(2.0)]])
    c, h = lesson.lstm_unit_forward(np.array([[2.0]]), x, np.array([1.0]))
    np.testing.assert_allclose(c, [[0.75 * 2 + 0.5 * 0.6]])
    np.testing.assert_allclose(h, [[0.5 * math.tanh(1.8)]])
    c, h = lesson.lstm_unit_forward(np.array([[2.0]]), x, np.array([0.0]))  # a new sequence
    np.testing.assert_allclose(c, [[0.3]])


@pytest.mark.parametrize("n, d, seed", [(1, 1, 0), (3, 2, 1), (4, 5, 2)])
def test_unit_matches_minicaffe(lesson, n, d, seed):
    rng = np.random.default_rng(seed)
    c_prev = rng.uniform(-2, 2, (n, d)).astype(np.float32)
    x = rng.uniform(-3, 3, (n, 4 * d)).astype(np.float32)
    cont = (np.arange(n) % 2).astype(np.float32)
    dc, dh = rng.uniform(-1, 1, (2, n, d))
    c, h, dc_prev, dx = run_unit(c_prev, x, cont, dc, dh)
    mine_c, mine_h = lesson.lstm_unit_forward(c_prev, x, cont)
    np.testing.assert_allclose(mine_c, c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mine_h, h, rtol=1e-5, atol=1e-6)
    mine_dc_prev, mine_dx = lesson.lstm_unit_backward(c_prev, x, cont, c, dc, dh)
    np.testing.assert_allclose(mine_dc_prev, dc_prev, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(mine_dx, dx, rtol=1e-4, atol=1e-6)


def test_unit_backward_matches_finite_differences(lesson):
    rng = np.random.default_rng(7)
    n, d = 2, 3
    c_prev, x = rng.uniform(-1, 1, (n, d)), rng.uniform(-2, 2, (n, 4 * d))
    cont, dc, dh = np.array([1.0, 0.0]), rng.uniform(-1, 1, (n, d)), rng.uniform(-1, 1, (n, d))

    def objective(c_prev, x):  # E = <dc, c> + <dh, h>, so dE/dc = dc and dE/dh = dh
        c, h = lesson.lstm_unit_forward(c_prev, x, cont)
        return float((dc * c).sum() + (dh * h).sum())

    c, _ = lesson.lstm_unit_forward(c_prev, x, cont)
    dc_prev, dx = lesson.lstm_unit_backward(c_prev, x, cont, c, dc, dh)
    for array, analytic in ((c_prev, dc_prev), (x, dx)):
        for k in np.ndindex(array.shape):
            saved = array[k]
            array[k] = saved + 1e-6
            plus = objective(c_prev, x)
            array[k] = saved - 1e-6
            minus = objective(c_prev, x)
            array[k] = saved
            assert abs((plus - minus) / 2e-6 - analytic[k]) < 1e-6, f"element {k}"


def test_lstm_matches_stepwise_lstm_units(lesson):
    x, cont, weights, (h0, c0) = problem()
    h, c = lesson.lstm_forward(x, cont, *weights, h0, c0)
    ref_h, ref_c = reference_lstm(x, cont, *weights, h0, c0)
    np.testing.assert_allclose(h, ref_h, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(c, ref_c, rtol=1e-4, atol=1e-5)
    if "LSTM" in layer_type_list():  # minicaffe's own LSTM layer, where this tree has it
        param = caffe_pb2.LayerParameter(name="lstm", type="LSTM")
        param.recurrent_param.num_output = h0.shape[1]
        layer, bottom, top = create_layer(param), [Blob(x.shape), Blob(cont.shape)], [Blob()]
        bottom[0].data, bottom[1].data = x, cont
        layer.setup(bottom, top)
        for blob, w in zip(layer.blobs, weights):  # W_xc, b_c, W_hc: Caffe's order
            blob.data = w
        # The layer starts from a zero state; so does this run (cont_0 = 0 ignores h0, c0).
        layer.forward(bottom, top)
        np.testing.assert_allclose(h, top[0].data, rtol=1e-4, atol=1e-5)


def test_a_new_sequence_forgets_the_past(lesson):
    # Stream 0 restarts at t = 2: from there on its outputs are those of a fresh run on
    # x[2:] alone, whatever came before (the cell AND the hidden state are cut off).
    x, cont, weights, (h0, c0) = problem(T=5, restart=2)
    h, _ = lesson.lstm_forward(x, cont, *weights, h0, c0)
    anything = np.full((1, h0.shape[1]), 5.0, np.float32)  # an initial state that must not matter
    later, _ = lesson.lstm_forward(x[2:, :1], cont[2:, :1], *weights, anything, -anything)
    np.testing.assert_allclose(h[2:, :1], later, rtol=1e-5, atol=1e-6)
    # The other streams go on: their past does matter.
    fresh, _ = lesson.lstm_forward(x[2:, 1:], cont[2:, 1:], *weights, h0[1:] * 0, c0[1:] * 0)
    assert not np.allclose(h[2:, 1:], fresh, atol=1e-3)


def build_net(lesson, T, N, I, D):
    param = text_format.Parse(lesson.unrolled_lstm_net(T, N, I, D), caffe_pb2.NetParameter())
    param.force_backward = True  # no loss layer here: ask for the backward pass anyway
    return Net(param, "TEST")


@pytest.mark.parametrize("T", [1, 4])
def test_unrolled_net_computes_the_lstm(lesson, T):
    x, cont, weights, (h0, c0) = problem(T=T, restart=T - 1)
    net = build_net(lesson, T, 3, 2, 3)
    for blob, w in zip(net.learnable_params, weights):
        blob.data = w
    out = net.forward(x=x, cont=cont, h_0=h0[None], c_0=c0[None])
    ref_h, _ = reference_lstm(x, cont, *weights, h0, c0)
    np.testing.assert_allclose(out["h"], ref_h, rtol=1e-4, atol=1e-5)


def test_unrolled_net_shares_one_set_of_weights(lesson):
    # Whatever T, three learnable blobs: W_xc (4D, I), b_c (4D) and W_hc (4D, D), the last
    # one used by every step; a step with a copy of its own would train apart.
    net = build_net(lesson, 5, 3, 2, 4)
    assert [b.shape for b in net.learnable_params] == [(16, 2), (16,), (16, 4)]


def test_shared_weight_gradient_sums_over_steps(lesson):
    # Backward through the net: dE/dW_hc collects a term from every step. Compare with
    # central differences of the net's own forward, E = <r, h>.
    T, N, I, D = 3, 2, 2, 2
    x, cont, weights, (h0, c0) = problem(T, N, I, D, seed=3, restart=1)
    net = build_net(lesson, T, N, I, D)
    for blob, w in zip(net.learnable_params, weights):
        blob.data = w
    inputs = dict(x=x, cont=cont, h_0=h0[None], c_0=c0[None])
    r = np.random.default_rng(4).uniform(-1, 1, (T, N, D)).astype(np.float32)
    net.forward(**inputs)
    net.clear_param_diffs()
    net.backward(h=r)
    w_hc = net.learnable_params[2]
    analytic = w_hc.diff.copy()
    for k in [(0, 0), (3, 1), (5, 0), (7, 1)]:
        saved = w_hc.data[k]
        energies = []
        for step in (1e-2, -1e-2):
            w_hc.data[k] = saved + step
            energies.append(float((net.forward(**inputs)["h"] * r).sum()))
        w_hc.data[k] = saved
        numeric = (energies[0] - energies[1]) / 2e-2
        assert abs(numeric - analytic[k]) < 2e-3 * max(1.0, abs(numeric)), f"W_hc{k}"
