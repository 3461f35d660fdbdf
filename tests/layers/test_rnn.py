"""RNN: shapes, a forward pass against an independent numpy recurrence, one batch against
the same sequence fed one step at a time (Caffe's TestForward), Caffe's four gradient
checks (stepsize 1e-2, threshold 1e-3, exhaustive), the static input, expose_hidden, the
engines agree, bad input. Tests taking `mode` run once per engine (numpy, OpenCL)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicaffe import common
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.testing import GradientChecker
from minicaffe.testing.engines import compare_engines
from tests.strategies import blob_from, layer_param

NUM_OUTPUT = 7  # Caffe's test fixture


def rnn_param(num_output=NUM_OUTPUT, **fields):
    # Caffe's fixture: gaussian weights (std 0.2) and biases (std 0.1), phase TEST.
    fields.setdefault("weight_filler", {"type": "gaussian", "std": 0.2})
    fields.setdefault("bias_filler", {"type": "gaussian", "std": 0.1})
    return layer_param("RNN", "rnn", phase="TEST", recurrent_param={"num_output": num_output, **fields})


def inputs(T, N, seed=0, x_dims=(3, 2)):
    x = np.random.default_rng(seed).uniform(-1, 1, (T, N, *x_dims))
    cont = (np.arange(T)[:, None] > 0).repeat(N, 1)  # every stream starts at step 0
    return blob_from(x), blob_from(cont)


def reference(x, cont, params, static=None, h0=None):
    """h_t = tanh(W_hh (cont_t h_{t-1}) + W_xh x_t + b_h [+ W_s x_static]), o_t = tanh(W_ho h_t + b_o),
    in float64, from the equations rather than the unrolled net."""
    p = [np.asarray(b, np.float64) for b in params]
    if static is None:
        w_xh, b_h, w_hh, w_ho, b_o = p
    else:
        w_xh, b_h, w_s, w_hh, w_ho, b_o = p
    T, N = cont.shape
    h = np.zeros((N, w_hh.shape[0])) if h0 is None else np.asarray(h0, np.float64).reshape(N, -1)
    outputs = []
    for t in range(T):
        a = (cont[t][:, None] * h) @ w_hh.T + x[t].reshape(N, -1) @ w_xh.T + b_h
        if static is not None:
            a += static.reshape(N, -1) @ w_s.T
        h = np.tanh(a)
        outputs.append(np.tanh(h @ w_ho.T + b_o))
    return np.stack(outputs), h


def run(layer, bottom, tops=1):
    top = [Blob() for _ in range(tops)]
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    return top


def test_setup_shapes_and_parameters():
    x, cont = inputs(1, 3)
    layer = create_layer(rnn_param())
    (top,) = run(layer, [x, cont])
    assert top.shape == (1, 3, NUM_OUTPUT)  # Caffe's TestSetUp
    # One blob per shared name: W_xh, b_h, W_hh, W_ho, b_o (not one per step).
    assert [b.shape for b in layer.blobs] == [(7, 6), (7,), (7, 7), (7, 7), (7,)]
    # Every inner layer is named after this one, but for the pseudo-loss, added after the
    # renaming, and the Splits the inner Net adds, named after their blobs (as in Caffe).
    net = layer.unrolled_net
    assert net.layer_names[-1] == "o_pseudoloss"
    assert all(n.startswith("rnn_") for n, l in zip(net.layer_names[:-1], net.layers) if l.type != "Split")


def test_forward_matches_the_recurrence(mode):
    x, cont = inputs(4, 2, seed=1)
    c = cont.cpu_data().copy()
    c[2, 1] = 0  # stream 1 starts a new sequence at step 2
    cont = blob_from(c)
    layer = create_layer(rnn_param())
    (top,) = run(layer, [x, cont])
    expected, _ = reference(x.cpu_data(), c, [b.cpu_data() for b in layer.blobs])
    np.testing.assert_allclose(top.cpu_data(), expected, rtol=1e-5, atol=1e-6)
    # With the restart, stream 1's steps 2, 3 are those of a fresh sequence.
    fresh, _ = reference(x.cpu_data()[2:, 1:], np.array([[0], [1]]), [b.cpu_data() for b in layer.blobs])
    np.testing.assert_allclose(top.cpu_data()[2:, 1:], fresh, rtol=1e-5, atol=1e-6)


def test_one_step_at_a_time_matches_the_whole_sequence(mode):
    # Caffe's TestForward: 3 steps in one batch, then 3 batches of 1 step that carry the
    # state; then 1-step batches with cont = 0 differ everywhere but at the first step.
    T, N = 3, 3
    x, cont = inputs(T, N, seed=2)
    layer = create_layer(rnn_param())
    (top,) = run(layer, [x, cont])
    whole = top.cpu_data().copy()
    for flush in (False, True):
        step_layer = create_layer(rnn_param())
        x1, cont1 = Blob((1, N, 3, 2)), Blob((1, N))
        top1 = Blob()
        step_layer.setup([x1, cont1], [top1])
        for src, dst in zip(layer.blobs, step_layer.blobs):
            dst.mutable_cpu_data()[...] = src.cpu_data()
        for t in range(T):
            x1.mutable_cpu_data()[...] = x.cpu_data()[t:t + 1]
            cont1.mutable_cpu_data()[...] = 0 if flush else float(t > 0)
            step_layer.forward([x1, cont1], [top1])
            if t == 0 or not flush:
                np.testing.assert_allclose(top1.cpu_data()[0], whole[t], atol=1e-5)
            else:
                assert np.all(top1.cpu_data()[0] != whole[t])


# Caffe's four gradient tests: (T, N, cont, static input).
CAFFE_CASES = {
    "gradient": (1, 3, lambda c: c * 0, False),
    "nonzero_cont": (1, 3, lambda c: (np.arange(c.size) > 2).reshape(c.shape), False),
    "nonzero_cont_buffer_size_2": (2, 2, lambda c: (np.arange(c.size) > 2).reshape(c.shape), False),
    "nonzero_cont_buffer_size_2_static": (2, 2, lambda c: (np.arange(c.size) > 2).reshape(c.shape), True),
}


@pytest.mark.parametrize("case", sorted(CAFFE_CASES))
def test_caffes_gradient_checks(case):
    # On the numpy engine: exhaustive checks run thousands of forwards, too slow on a CPU
    # OpenCL device for CI; the OpenCL engine's gradients are checked below and compared
    # with these by test_engines_agree.
    with common.using_mode(common.CPU):
        caffes_gradient_check(case)


def caffes_gradient_check(case):
    T, N, cont_of, static = CAFFE_CASES[case]
    x, cont = inputs(T, N, seed=3)
    cont = blob_from(cont_of(cont.cpu_data()))
    bottom = [x, cont]
    if static:
        bottom.append(blob_from(np.random.default_rng(4).uniform(-1, 1, (N, 2, 3, 4))))
    checker = GradientChecker(1e-2, 1e-3)
    # Exhaustive, as Caffe's, with a smaller hidden size than its 7 to keep CI quick.
    for check_bottom in ([0, 2] if static else [0]):
        checker.check_gradient_exhaustive(create_layer(rnn_param(3)), bottom, [Blob()], check_bottom)


@given(T=st.integers(1, 3), N=st.integers(1, 3), seed=st.integers(0, 2**31 - 1),
       static=st.booleans())
@settings(max_examples=4)
def test_gradient_random_sequences(mode, T, N, seed, static):
    rng = np.random.default_rng(seed)
    x = blob_from(rng.uniform(-1, 1, (T, N, 2)))
    # Sequences start at step 0: with cont_0 = 1 the state carried from the previous
    # forward (the checker runs many) would change the objective between runs.
    c = rng.integers(0, 2, (T, N))
    c[0] = 0
    cont = blob_from(c)
    bottom = [x, cont] + ([blob_from(rng.uniform(-1, 1, (N, 3)))] if static else [])
    GradientChecker(1e-2, 1e-3).check_gradient(create_layer(rnn_param(3)), bottom, [Blob()],
                                                0)


def test_static_input_matches_the_recurrence(mode):
    x, cont = inputs(3, 2, seed=5)
    static = np.random.default_rng(6).uniform(-1, 1, (2, 4))
    layer = create_layer(rnn_param())
    (top,) = run(layer, [x, cont, blob_from(static)])
    assert [b.shape for b in layer.blobs][2] == (7, 4)  # W_xh_static, after W_xh and b_h
    expected, _ = reference(x.cpu_data(), cont.cpu_data(), [b.cpu_data() for b in layer.blobs], static)
    np.testing.assert_allclose(top.cpu_data(), expected, rtol=1e-5, atol=1e-6)


def test_expose_hidden_takes_h0_and_gives_hT(mode):
    x, _ = inputs(3, 2, seed=7)
    cont = blob_from(np.ones((3, 2)))  # continue from the given h_0
    h0 = blob_from(np.random.default_rng(8).uniform(-1, 1, (1, 2, NUM_OUTPUT)))
    layer = create_layer(rnn_param(expose_hidden=True))
    top, h_t = run(layer, [x, cont, h0], tops=2)
    expected, last = reference(x.cpu_data(), cont.cpu_data(), [b.cpu_data() for b in layer.blobs],
                               h0=h0.cpu_data())
    np.testing.assert_allclose(top.cpu_data(), expected, rtol=1e-5, atol=1e-6)
    assert h_t.shape == (1, 2, NUM_OUTPUT)
    np.testing.assert_allclose(h_t.cpu_data()[0], last, rtol=1e-5, atol=1e-6)
    # Nothing is carried: a second forward gives the same answer.
    layer.forward([x, cont, h0], [top, h_t])
    np.testing.assert_allclose(top.cpu_data(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.opencl
def test_engines_agree(gpu_only):
    x, cont = inputs(3, 2, seed=9)
    c = cont.cpu_data().copy()
    c[1, 0] = 0
    static = np.random.default_rng(10).uniform(-1, 1, (2, 3))
    compare_engines(rnn_param(), [x.cpu_data(), c, static], propagate_down=[True, False, True])


def test_bad_input():
    x, cont = inputs(2, 3)
    with pytest.raises(MinicaffeError, match=r"RNN layer 'rnn': bottom 1 \(cont\).*\(T, N\) = \(2, 3\)"):
        run(create_layer(rnn_param()), [x, blob_from(np.ones((2, 2)))])
    with pytest.raises(MinicaffeError, match="num_output must be positive"):
        run(create_layer(rnn_param(0)), [x, cont])
    with pytest.raises(MinicaffeError, match=r"x_static.*first axis must be N = 3"):
        run(create_layer(rnn_param()), [x, cont, blob_from(np.ones((2, 4)))])
    with pytest.raises(MinicaffeError, match="takes at least 3 bottom"):
        run(create_layer(rnn_param(expose_hidden=True)), [x, cont])
    with pytest.raises(MinicaffeError, match=r"initial state bottom 2 .* expected \(1, 3, 7\)"):
        run(create_layer(rnn_param(expose_hidden=True)), [x, cont, blob_from(np.ones((1, 3, 6)))], 2)
    layer = create_layer(rnn_param())
    (top,) = run(layer, [x, cont])
    with pytest.raises(MinicaffeError, match="number of time steps changed from 2 to 4"):
        layer.forward(list(inputs(4, 3)), [top])
    with pytest.raises(MinicaffeError, match="cannot backpropagate to the sequence indicators"):
        layer.backward([top], [True, True], [x, cont])


RNN_NET = """
layer { name: "data" type: "Input" top: "x" top: "cont"
        input_param { shape { dim: 3 dim: 2 dim: 4 } shape { dim: 3 dim: 2 } } }
layer { name: "rnn1" type: "RNN" bottom: "x" bottom: "cont" top: "o"
        recurrent_param { num_output: 5 weight_filler { type: "gaussian" std: 0.5 }
                          bias_filler { type: "gaussian" std: 0.5 } } }
"""


def test_in_a_net_weights_are_saved_loaded_and_shared(tmp_path):
    from google.protobuf import text_format

    from minicaffe.net import TEST, Net
    from minicaffe.proto import caffe_pb2

    param = text_format.Parse(RNN_NET, caffe_pb2.NetParameter())
    x, cont = inputs(3, 2, seed=11, x_dims=(4,))

    def forward(net):
        net.blobs["x"].data[...] = x.cpu_data()
        net.blobs["cont"].data[...] = cont.cpu_data()
        return net.forward()["o"].copy()

    with common.using_mode(common.CPU):
        train = Net(param, TEST)
        # The outer net learns the five shared blobs, not one copy per step.
        assert [b.shape for b in train.learnable_params] == [(5, 4), (5,), (5, 5), (5, 5), (5,)]
        before = forward(train)
        train.save(tmp_path / "rnn.caffemodel")
        loaded = Net(param, TEST, weights=tmp_path / "rnn.caffemodel")
        np.testing.assert_array_equal(forward(loaded), before)
        # A test net sharing the train net's weights follows them: every step of its
        # unrolled net, not only the layers that own the shared names.
        shared = Net(param, TEST)
        shared.share_trained_layers_with(train)
        train.params["rnn1"][2].data[...] *= -1  # W_hh
        after = forward(train)
        assert not np.allclose(after, before)
        np.testing.assert_array_equal(forward(shared), after)
