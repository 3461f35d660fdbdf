"""Solver: lr policies, Caffe's update order, iter_size, clipping, snapshots, resume,
signals, and logs that Caffe's parse_log.py / extract_seconds.py read."""
import contextlib
import datetime
import io
import logging
import math
import os
import re
import signal
import sys

import numpy as np
import pytest
from google.protobuf import text_format
from hypothesis import assume, given
from hypothesis import strategies as st

from minicaffe import common, protoio
from minicaffe import log as glog
from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer, layer_registry, register_layer
from minicaffe.proto import caffe_pb2
from minicaffe.engine import select_mode
from minicaffe.signals import SignalHandler
from minicaffe.solver import learning_rate
from minicaffe.solvers import AdamSolver, NesterovSolver, SGDSolver, get_solver


# ---------------------------------------------------------------- helpers (test_cli uses them too)

def sample_x(rows, dim):
    return np.sin(0.7 * rows[:, None] + 1.3 * np.arange(dim)[None, :]).astype(np.float32)


def sample_y(rows, dim):
    return (0.5 * np.cos(0.5 * rows[:, None] - 0.9 * np.arange(dim)[None, :])).astype(np.float32)


class SequenceDataLayer(Layer):
    """Batch k holds rows kB .. kB+B-1 of an endless, deterministic data set (x, y).

    It has `set_batch_index`, like the Data layer, so the solver can rewind it on resume.
    Shapes come from `input_param` (B x D for x, B x K for y).
    """

    type = "SolverTestSequenceData"
    exact_num_bottom_blobs = 0
    exact_num_top_blobs = 2

    def layer_setup(self, bottom, top):
        self.shapes = [tuple(s.dim) for s in self.layer_param.input_param.shape]
        self.next_index = 0

    def set_batch_index(self, k):
        self.next_index = k

    def reshape(self, bottom, top):
        for blob, shape in zip(top, self.shapes):
            blob.reshape(shape)

    def forward_cpu(self, bottom, top):
        batch = self.shapes[0][0]
        rows = self.next_index * batch + np.arange(batch)
        top[0].mutable_cpu_data()[...] = sample_x(rows, self.shapes[0][1])
        top[1].mutable_cpu_data()[...] = sample_y(rows, self.shapes[1][1])
        self.next_index += 1

    def backward_cpu(self, top, propagate_down, bottom):
        pass

    # Host writes are enough on the device too: the next gpu_data() read copies them over.
    forward_gpu, backward_gpu = forward_cpu, backward_cpu


class LinearLossLayer(Layer):
    """E = |x W^T + b - y|^2 / 2B, with W and b learnable; host arithmetic in both modes."""

    type = "SolverTestLinearLoss"
    exact_num_bottom_blobs = 2
    exact_num_top_blobs = 1
    default_loss_weight = 1.0

    def layer_setup(self, bottom, top):
        from minicaffe.blob import Blob
        out = self.layer_param.inner_product_param.num_output
        self.blobs = [Blob(out, bottom[0].shape[1]), Blob(out)]
        self.blobs[0].mutable_cpu_data()[...] = common.rng().normal(0, 0.5, self.blobs[0].shape)
        self.blobs[1].mutable_cpu_data()[...] = 0.1
        self.param_propagate_down = [True, True]

    def reshape(self, bottom, top):
        top[0].reshape(())

    def forward_cpu(self, bottom, top):
        x, y = bottom[0].cpu_data(), bottom[1].cpu_data()
        W, b = self.blobs[0].cpu_data(), self.blobs[1].cpu_data()
        self.residual = x @ W.T + b - y
        top[0].mutable_cpu_data()[...] = np.sum(np.square(self.residual)) / (2 * len(x))

    def backward_cpu(self, top, propagate_down, bottom):
        dp = self.residual * (top[0].cpu_diff() / len(self.residual))
        self.blobs[0].mutable_cpu_diff()[...] += dp.T @ bottom[0].cpu_data()
        self.blobs[1].mutable_cpu_diff()[...] += dp.sum(0)

    forward_gpu, backward_gpu = forward_cpu, backward_cpu


@contextlib.contextmanager
def registered_test_layers():
    """Register this file's stand-in layers for the duration of a test module.

    The layer registry is global and tests/test_layout.py checks every registered type
    for an OpenCL twin, so they are removed again afterwards.
    """
    from minicaffe import layer as layer_module
    added = [cls for cls in (SequenceDataLayer, LinearLossLayer) if cls.type not in layer_registry()]
    for cls in added:
        register_layer(cls)
    try:
        yield
    finally:
        for cls in added:
            layer_module._REGISTRY.pop(cls.type, None)


@pytest.fixture(scope="module", autouse=True)
def stand_in_layers():
    with registered_test_layers():
        yield


def net_text(batch=4, dim=3, out=2, data="Input", lr_mult=(1, 2), decay_mult=(1, 0), name="tiny"):
    return f"""
name: "{name}"
layer {{ name: "data" type: "{data}" top: "x" top: "y"
        input_param {{ shape {{ dim: {batch} dim: {dim} }} shape {{ dim: {batch} dim: {out} }} }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "x" top: "p"
        param {{ lr_mult: {lr_mult[0]} decay_mult: {decay_mult[0]} }}
        param {{ lr_mult: {lr_mult[1]} decay_mult: {decay_mult[1]} }}
        inner_product_param {{ num_output: {out} weight_filler {{ type: "gaussian" std: 0.5 }}
                              bias_filler {{ type: "constant" value: 0.1 }} }} }}
layer {{ name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "y" top: "loss" }}
"""


@pytest.fixture(autouse=True)
def keep_engine():
    """Each test leaves the process-wide mode as it found it."""
    old = common.mode()
    yield
    common.set_mode(old)




def solver_mode_for(mode) -> str:
    """solver_mode for the test's engine; GPU runs wait until these layers have kernels."""
    if mode == common.GPU:
        missing = [t for t in ("Input", "InnerProduct", "EuclideanLoss") if not layer_registry()[t].has_gpu()]
        if missing:
            pytest.skip(f"{', '.join(missing)} has no OpenCL implementation yet")
        return "GPU"
    return "CPU"


def solver_param(extra="", net=None, mode=common.CPU, **net_kwargs) -> caffe_pb2.SolverParameter:
    text = (f"net_param {{ {net or net_text(**net_kwargs)} }}\n"
            f"base_lr: 0.1 lr_policy: \"fixed\" max_iter: 4 display: 0 solver_mode: {solver_mode_for(mode)} "
            "random_seed: 7 snapshot_after_train: false\n" + extra)
    return text_format.Merge(text, caffe_pb2.SolverParameter())  # Merge: later fields override


def set_inputs(net, x, y):
    net.blobs["x"].data[...] = x
    net.blobs["y"].data[...] = y


def weights(net):
    return [p.cpu_data().copy() for p in net.learnable_params]


def lr_param(**fields):
    return caffe_pb2.SolverParameter(**fields)


# ---------------------------------------------------------------- lr policies

def test_lr_known_answers_from_caffe_logs():
    # LeNet's solver; Caffe logs "Iteration 100, lr = 0.00992565".
    lenet = lr_param(lr_policy="inv", base_lr=0.01, gamma=0.0001, power=0.75)
    assert f"{learning_rate(lenet, 100)[0]:.6g}" == "0.00992565"
    assert f"{learning_rate(lenet, 10000)[0]:.6g}" == "0.00594604"
    # CaffeNet: step 0.01 x 0.1 every 100000 iterations.
    caffenet = lr_param(lr_policy="step", base_lr=0.01, gamma=0.1, stepsize=100000)
    assert learning_rate(caffenet, 99999)[0] == pytest.approx(0.01)
    assert learning_rate(caffenet, 100000) == (pytest.approx(0.001), 1)


# Closed forms at chosen points: each expected rate is worked out by hand (exact powers
# of two, squares and square roots), not by the formula under test.
@pytest.mark.parametrize("policy, fields, it, expected", [
    ("step", dict(gamma=0.5, stepsize=10), 9, 0.1),           # still in step 0
    ("step", dict(gamma=0.5, stepsize=10), 10, 0.05),         # one step: x 1/2
    ("step", dict(gamma=0.5, stepsize=10), 39, 0.0125),       # three steps: x 1/8
    ("exp", dict(gamma=0.5), 4, 0.00625),                     # 0.1 / 16
    ("exp", dict(gamma=2.0), 10, 102.4),                      # 0.1 * 1024
    ("inv", dict(gamma=1.0, power=1.0), 3, 0.025),            # 0.1 / (1 + 3)
    ("inv", dict(gamma=0.5, power=2.0), 2, 0.025),            # 0.1 / 2**2
    ("inv", dict(gamma=0.25, power=0.5), 12, 0.05),           # 0.1 / sqrt(4)
    ("poly", dict(power=1.0, max_iter=100), 25, 0.075),       # linear decay
    ("poly", dict(power=2.0, max_iter=100), 50, 0.025),       # (1/2)**2
    ("poly", dict(power=0.5, max_iter=100), 75, 0.05),        # sqrt(1/4)
    ("poly", dict(power=3.0, max_iter=10), 10, 0.0),          # zero at max_iter
    ("sigmoid", dict(gamma=0.1, stepsize=50), 50, 0.05),      # half way at stepsize
    ("sigmoid", dict(gamma=math.log(3), stepsize=5), 6, 0.075),  # 0.1 / (1 + 1/3)
    ("sigmoid", dict(gamma=math.log(3), stepsize=5), 4, 0.025),  # 0.1 / (1 + 3)
])
def test_lr_closed_forms(policy, fields, it, expected):
    p = lr_param(lr_policy=policy, base_lr=0.1, **fields)
    # The fields are float32 in caffe.proto, so ln 3 is rounded: allow for that.
    assert learning_rate(p, it)[0] == pytest.approx(expected, rel=1e-6, abs=1e-12)


iters = st.integers(0, 10**6)
gammas = st.floats(0.0, 2.0)
powers = st.floats(0.0, 3.0)
# Rates may overflow to inf (gamma > 1 for long) or underflow to 0, as in C: compare them
# with a relative tolerance where they are finite and exactly where they are not.
close = dict(rel=1e-9, abs=1e-300)


@given(it=iters, base=st.floats(1e-4, 1.0))
def test_lr_fixed(it, base):
    assert learning_rate(lr_param(lr_policy="fixed", base_lr=base), it)[0] == pytest.approx(base)


@given(it=iters, gamma=gammas, stepsize=st.integers(1, 10**5))
def test_lr_step_is_constant_within_a_step_and_multiplies_by_gamma_between(it, gamma, stepsize):
    p = lr_param(lr_policy="step", base_lr=0.1, gamma=gamma, stepsize=stepsize)
    rate, step = learning_rate(p, it)
    assert step == it // stepsize
    assert learning_rate(p, step * stepsize)[0] == rate
    assert learning_rate(p, (step + 1) * stepsize - 1)[0] == rate
    assert learning_rate(p, (step + 1) * stepsize)[0] == pytest.approx(rate * p.gamma, **close)


@given(it=st.integers(0, 10**5), gamma=gammas)
def test_lr_exp_multiplies_by_gamma_each_iteration(it, gamma):
    p = lr_param(lr_policy="exp", base_lr=0.1, gamma=gamma)
    assert learning_rate(p, 0)[0] == pytest.approx(0.1)
    rate = learning_rate(p, it)[0]
    assert learning_rate(p, it + 1)[0] == pytest.approx(rate * p.gamma, **close)


@given(it=iters, gamma=st.floats(0.0, 1.0), power=powers)
def test_lr_inv_starts_at_base_and_never_rises(it, gamma, power):
    p = lr_param(lr_policy="inv", base_lr=0.1, gamma=gamma, power=power)
    assert learning_rate(p, 0)[0] == pytest.approx(0.1)
    rate = learning_rate(p, it)[0]
    assert 0.0 <= learning_rate(p, it + 1)[0] <= rate <= 0.1 * (1 + 1e-7)


@given(values=st.lists(st.integers(0, 200), max_size=5, unique=True).map(sorted), gamma=st.floats(0.1, 1.0))
def test_lr_multistep_counts_passed_stepvalues(values, gamma):
    p = lr_param(lr_policy="multistep", base_lr=0.1, gamma=gamma, stepvalue=values)
    step, rate = 0, None
    for it in range(0, 250):  # the solver asks once per iteration, in order
        previous = rate
        rate, step = learning_rate(p, it, step)
        passed = sum(v <= it for v in values)
        assert step == passed
        if previous is not None:  # the rate changes exactly at the step values, by gamma
            assert rate == (pytest.approx(previous * p.gamma) if it in values else previous)


@given(max_iter=st.integers(1, 10**5), power=powers, data=st.data())
def test_lr_poly_falls_from_base_to_zero(max_iter, power, data):
    p = lr_param(lr_policy="poly", base_lr=0.1, power=power, max_iter=max_iter)
    it = data.draw(st.integers(0, max_iter - 1))
    assert learning_rate(p, 0)[0] == pytest.approx(p.base_lr)
    assert 0.0 <= learning_rate(p, it + 1)[0] <= learning_rate(p, it)[0] <= p.base_lr * (1 + 1e-7)
    if p.power > 0:  # (the float32 field may round a tiny power to 0)
        assert learning_rate(p, max_iter)[0] == 0.0


@given(stepsize=st.integers(1, 10**4), gamma=st.floats(1e-3, 1.0), d=st.integers(0, 10**4))
def test_lr_sigmoid_rises_through_half_base_symmetrically(stepsize, gamma, d):
    p = lr_param(lr_policy="sigmoid", base_lr=0.1, gamma=gamma, stepsize=stepsize)
    assert learning_rate(p, stepsize)[0] == pytest.approx(p.base_lr / 2)
    assume(d <= stepsize)
    later, earlier = learning_rate(p, stepsize + d)[0], learning_rate(p, stepsize - d)[0]
    assert earlier <= p.base_lr / 2 <= later <= p.base_lr
    assert later + earlier == pytest.approx(p.base_lr)  # the logistic curve is point-symmetric


@pytest.mark.parametrize("extra, message", [
    ('lr_policy: "cosine"', "unknown lr_policy 'cosine'"),
    ("", "lr_policy is not set"),
    ('lr_policy: "step" gamma: 0.1', "needs stepsize > 0"),
    ('lr_policy: "inv" gamma: -1 power: 1', "needs gamma >= 0"),
    ('lr_policy: "sigmoid" gamma: -0.1 stepsize: 10', "needs gamma >= 0"),
    ('lr_policy: "fixed" regularization_type: "L3"', "unknown regularization_type"),
    ('lr_policy: "fixed" average_loss: 0', "average_loss must be at least 1"),
])
def test_bad_solver_settings_name_the_file(tmp_path, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(net_text())
    (tmp_path / "solver.prototxt").write_text(f'net: "net.prototxt" base_lr: 0.1 solver_mode: CPU {extra}')
    with pytest.raises(MinicaffeError, match=re.escape(message)) as err:
        get_solver("solver.prototxt")
    assert "solver.prototxt" in str(err.value)


@pytest.mark.parametrize("text, message", [
    ('base_lr: 0.1 lr_policy: "fixed"', "no train net"),
    ('net: "net.prototxt" train_net: "net.prototxt" base_lr: 0.1 lr_policy: "fixed"', "give the train net once"),
    ('train_net: "net.prototxt" test_net: "net.prototxt" base_lr: 0.1 lr_policy: "fixed" test_interval: 1',
     "test_iter must be specified for each test network"),
    ('net: "net.prototxt" test_iter: 1 base_lr: 0.1 lr_policy: "fixed"', "test_interval"),
    ('net: "missing.prototxt" base_lr: 0.1 lr_policy: "fixed"', "missing.prototxt: no such file"),
    ('net: "net.prototxt" type: "RMSProp2" base_lr: 0.1 lr_policy: "fixed"', "unknown solver type 'RMSProp2'"),
])
def test_bad_nets_in_solver_files(tmp_path, monkeypatch, text, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(net_text())
    (tmp_path / "solver.prototxt").write_text(text + " solver_mode: CPU")
    with pytest.raises(MinicaffeError, match=re.escape(message)) as err:
        get_solver("solver.prototxt")
    assert "solver.prototxt" in str(err.value)


def test_deprecated_solver_type_and_snapshot_prefix_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(net_text())
    (tmp_path / "s.prototxt").write_text('net: "net.prototxt" solver_type: NESTEROV base_lr: 0.1 '
                                         'lr_policy: "fixed" solver_mode: CPU')
    solver = get_solver("s.prototxt")
    assert isinstance(solver, NesterovSolver) and solver.param.type == "Nesterov"
    assert solver.param.snapshot_prefix == "s"  # Caffe: the solver file minus its extension
    (tmp_path / "both.prototxt").write_text('net: "net.prototxt" solver_type: ADAM type: "Adam" '
                                            'base_lr: 0.1 lr_policy: "fixed" solver_mode: CPU')
    with pytest.raises(MinicaffeError, match="cannot both be set"):
        get_solver("both.prototxt")


def test_test_nets_share_weights_and_take_test_state():
    p = solver_param('test_iter: 1 test_iter: 2 test_interval: 2 test_state { stage: "a" } test_state { }')
    solver = SGDSolver(p)
    assert [net.phase for net in solver.test_nets] == [caffe_pb2.TEST, caffe_pb2.TEST]
    assert solver.net.phase == caffe_pb2.TRAIN
    solver.test(1)
    solver.net.params["ip"][0].data[...] = 3.0
    solver.test(0)
    assert np.all(solver.test_nets[0].params["ip"][0].data == 3.0)


# ---------------------------------------------------------------- the update rule

def hand_gradients(W, b, x, y):
    """EuclideanLoss of x W^T + b against y: E = |p - y|^2 / 2N, by hand."""
    p = x @ W.T + b
    dp = (p - y) / len(x)
    return dp.T @ x, dp.sum(0)


@pytest.mark.parametrize("reg", ["L2", "L1"])
def test_sgd_two_steps_by_hand(mode, reg):
    lr, mom, wd = 0.1, 0.9, 0.01
    lr_mult, decay_mult = (1.0, 2.0), (3.0, 0.5)
    p = solver_param(f'base_lr: {lr} momentum: {mom} weight_decay: {wd} regularization_type: "{reg}"',
                     lr_mult=lr_mult, decay_mult=decay_mult, mode=mode)
    solver = SGDSolver(p)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, 2)).astype(np.float32)
    set_inputs(solver.net, x, y)
    W, b = (q.astype(np.float64) for q in weights(solver.net))
    hW, hb = np.zeros_like(W), np.zeros_like(b)
    regularizer = (lambda w: w) if reg == "L2" else np.sign
    for _ in range(2):
        gW, gb = hand_gradients(W, b, x, y)
        gW = gW + wd * decay_mult[0] * regularizer(W)
        gb = gb + wd * decay_mult[1] * regularizer(b)
        hW, hb = mom * hW + lr * lr_mult[0] * gW, mom * hb + lr * lr_mult[1] * gb
        W, b = W - hW, b - hb
    solver.step(2)
    got_W, got_b = weights(solver.net)
    np.testing.assert_allclose(got_W, W, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_b, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(solver.history[0].cpu_data(), hW, rtol=1e-5, atol=1e-6)
    assert solver.iter == 2


def test_lr_mult_zero_freezes_a_parameter(mode):
    solver = SGDSolver(solver_param("momentum: 0.9 weight_decay: 0.1", lr_mult=(0, 1), mode=mode))
    set_inputs(solver.net, np.ones((4, 3)), np.zeros((4, 2)))
    before = weights(solver.net)
    solver.step(2)
    after = weights(solver.net)
    np.testing.assert_array_equal(after[0], before[0])
    assert not np.array_equal(after[1], before[1])


def _adam_nesterov_reference(kind, W, b, x, y, lr, mom, steps, beta2=0.999, delta=1e-8):
    state = [np.zeros_like(W), np.zeros_like(b), np.zeros_like(W), np.zeros_like(b)]
    params = [W, b]
    for t in range(1, steps + 1):
        grads = hand_gradients(params[0], params[1], x, y)
        for i, g in enumerate(grads):
            if kind == "Nesterov":
                v_prev = state[i]
                state[i] = mom * v_prev + lr * g
                params[i] = params[i] - ((1 + mom) * state[i] - mom * v_prev)
            else:
                state[i] = mom * state[i] + (1 - mom) * g
                state[i + 2] = beta2 * state[i + 2] + (1 - beta2) * g * g
                correction = math.sqrt(1 - beta2 ** t) / (1 - mom ** t)
                params[i] = params[i] - lr * correction * state[i] / (np.sqrt(state[i + 2]) + delta)
    return params


@pytest.mark.parametrize("cls", [NesterovSolver, AdamSolver])
def test_nesterov_and_adam_by_hand(mode, cls):
    lr, mom = 0.05, 0.9
    solver = cls(solver_param(f'type: "{cls.type}" base_lr: {lr} momentum: {mom}', lr_mult=(1, 1), mode=mode))
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, 2)).astype(np.float32)
    set_inputs(solver.net, x, y)
    W, b = (q.astype(np.float64) for q in weights(solver.net))
    W, b = _adam_nesterov_reference(cls.type, W, b, x, y, lr, mom, steps=3)
    solver.step(3)
    got_W, got_b = weights(solver.net)
    np.testing.assert_allclose(got_W, W, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got_b, b, rtol=1e-4, atol=1e-6)
    assert len(solver.history) == (4 if cls is AdamSolver else 2)


def test_iter_size_2_equals_twice_the_batch(mode):
    extra = "momentum: 0.9 weight_decay: 0.01"
    small = SGDSolver(solver_param(extra + " iter_size: 2", batch=2, data=SequenceDataLayer.type, mode=mode))
    big = SGDSolver(solver_param(extra, batch=4, data=SequenceDataLayer.type, mode=mode))
    for a, b in zip(weights(small.net), weights(big.net)):
        np.testing.assert_array_equal(a, b)  # same seed, same fillers
    small.step(3)
    big.step(3)
    for a, b in zip(weights(small.net), weights(big.net)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_clip_gradients_scales_to_the_threshold(mode, capsys):
    clip = 0.01
    solver = SGDSolver(solver_param(f"clip_gradients: {clip} display: 1", lr_mult=(1, 1), mode=mode))
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(4, 3)).astype(np.float32), 5 + rng.normal(size=(4, 2)).astype(np.float32)
    set_inputs(solver.net, x, y)
    W, b = (q.astype(np.float64) for q in weights(solver.net))
    gW, gb = hand_gradients(W, b, x, y)
    norm = math.sqrt((gW ** 2).sum() + (gb ** 2).sum())
    assert norm > clip
    solver.step(1)
    got_W, got_b = weights(solver.net)
    np.testing.assert_allclose(W - got_W, 0.1 * gW * clip / norm, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(b - got_b, 0.1 * gb * clip / norm, rtol=1e-4, atol=1e-8)
    line = re.search(r"Gradient clipping: scaling down gradients \(L2 norm (\S+) > (\S+)\) "
                     r"by scale factor (\S+)", capsys.readouterr().err)
    assert line and float(line[1]) == pytest.approx(norm, rel=1e-4) and float(line[3]) == pytest.approx(clip / norm, rel=1e-4)


def test_average_loss_smooths_the_displayed_loss(capsys):
    solver = SGDSolver(solver_param("average_loss: 3 display: 1", data=SequenceDataLayer.type))
    seen = []
    forward_backward = solver.net.forward_backward
    solver.net.forward_backward = lambda: seen.append(forward_backward()) or seen[-1]
    solver.step(5)
    shown = [float(v) for v in re.findall(r"Iteration \d+ \(.*\), loss = (\S+)", capsys.readouterr().err)]
    expected = [np.mean(seen[max(0, i - 2): i + 1]) for i in range(5)]
    np.testing.assert_allclose(shown, expected, rtol=1e-4)


# ---------------------------------------------------------------- snapshots and resume

def test_snapshot_files_are_valid_protobufs(tmp_path, capsys):
    prefix = tmp_path / "snaps" / "tiny"
    prefix.parent.mkdir()
    solver = SGDSolver(solver_param(f'momentum: 0.9 snapshot: 2 snapshot_prefix: "{prefix}" max_iter: 3 '
                                    "snapshot_after_train: true"))
    solver.solve()
    names = sorted(os.listdir(prefix.parent))
    assert names == ["tiny_iter_2.caffemodel", "tiny_iter_2.solverstate",
                     "tiny_iter_3.caffemodel", "tiny_iter_3.solverstate"]  # no stray temp files
    model = protoio.read_binary(f"{prefix}_iter_3.caffemodel", caffe_pb2.NetParameter())
    ip = next(layer for layer in model.layer if layer.name == "ip")
    np.testing.assert_array_equal(np.array(ip.blobs[0].data).reshape(2, 3), solver.net.params["ip"][0].data)
    state = protoio.read_binary(f"{prefix}_iter_3.solverstate", caffe_pb2.SolverState())
    assert state.iter == 3 and state.learned_net == f"{prefix}_iter_3.caffemodel"
    assert [tuple(h.shape.dim) for h in state.history] == [(2, 3), (2,)]
    np.testing.assert_array_equal(np.array(state.history[0].data).reshape(2, 3), solver.history[0].cpu_data())
    err = capsys.readouterr().err
    assert f"Snapshotting to binary proto file {prefix}_iter_2.caffemodel" in err
    assert f"Snapshotting solver state to binary proto file {prefix}_iter_2.solverstate" in err


def test_a_failed_snapshot_write_leaves_the_old_file(tmp_path, monkeypatch):
    prefix = tmp_path / "tiny"
    solver = SGDSolver(solver_param(f'snapshot_prefix: "{prefix}"'))
    solver.snapshot()
    model = tmp_path / "tiny_iter_0.caffemodel"
    before = model.read_bytes()
    solver.step(1)
    solver.iter = 0  # write over the same name
    monkeypatch.setattr(protoio.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        solver.snapshot()
    assert model.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["tiny_iter_0.caffemodel", "tiny_iter_0.solverstate"]


def test_snapshot_prefix_in_a_missing_folder_is_an_error_and_no_folder_is_made(tmp_path):
    # One behaviour, as in Caffe: the folder must exist, before training and at every snapshot.
    with pytest.raises(MinicaffeError, match=r"the directory '.*no/such/dir', which does not exist; "
                                             r"create it \(mkdir -p"):
        SGDSolver(solver_param(f'snapshot: 1 snapshot_prefix: "{tmp_path}/no/such/dir/x"'))
    solver = SGDSolver(solver_param(f'snapshot_prefix: "{tmp_path}/gone/x"'))  # snapshot: 0, not checked
    with pytest.raises(MinicaffeError, match=r"cannot write .*gone/x_iter_0.caffemodel: the directory "
                                             r".*gone does not exist"):
        solver.snapshot()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_snapshots_and_saved_weights_honour_the_umask(tmp_path, umask, mode):
    # What any new file gets (0666 less the umask), like the files Caffe writes.
    old = os.umask(umask)
    try:
        solver = SGDSolver(solver_param(f'snapshot_prefix: "{tmp_path}/tiny"'))
        solver.snapshot()
        solver.net.save(tmp_path / "saved.caffemodel")
    finally:
        os.umask(old)
    for name in ("tiny_iter_0.caffemodel", "tiny_iter_0.solverstate", "saved.caffemodel"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


def test_the_weights_field_fills_the_train_and_test_nets(tmp_path):
    source = SGDSolver(solver_param())
    source.net.params["ip"][0].data[...] = 3.0
    source.net.params["ip"][1].data[...] = -1.0
    source.net.save(tmp_path / "w.caffemodel")
    source.net.params["ip"][1].data[...] = -2.0
    source.net.save(tmp_path / "bias.caffemodel")
    # One entry may list several files; later files win, as in Caffe's LoadNetWeights.
    solver = SGDSolver(solver_param(f'test_iter: 1 test_interval: 1 '
                                    f'weights: "{tmp_path}/w.caffemodel , {tmp_path}/bias.caffemodel"'))
    for net in (solver.net, *solver.test_nets):
        np.testing.assert_array_equal(net.params["ip"][0].data, np.full((2, 3), 3.0))
        np.testing.assert_array_equal(net.params["ip"][1].data, [-2.0, -2.0])


RESUME = ('momentum: 0.9 weight_decay: 0.01 iter_size: 2 lr_policy: "multistep" gamma: 0.5 '
          'stepvalue: 2 stepvalue: 4 max_iter: 6 snapshot: 3 snapshot_after_train: true')


def test_resume_matches_a_straight_run(tmp_path):
    straight = SGDSolver(solver_param(RESUME + f' snapshot_prefix: "{tmp_path}/a"', data=SequenceDataLayer.type))
    straight.solve()
    resumed = SGDSolver(solver_param(RESUME + f' snapshot_prefix: "{tmp_path}/b"', data=SequenceDataLayer.type))
    resumed.solve(resume_file=f"{tmp_path}/a_iter_3.solverstate")
    assert resumed.iter == 6 and resumed.current_step == straight.current_step == 2
    for a, b in zip(weights(straight.net), weights(resumed.net)):
        np.testing.assert_array_equal(a, b)
    # Weights alone (no history, no step, no data position) give a different run.
    weights_only = SGDSolver(solver_param(RESUME + f' snapshot_prefix: "{tmp_path}/c"', data=SequenceDataLayer.type))
    weights_only.net.copy_trained_layers_from(f"{tmp_path}/a_iter_3.caffemodel")
    weights_only.step(3)
    assert not np.array_equal(weights(weights_only.net)[0], weights(straight.net)[0])


def test_restore_finds_the_model_beside_a_moved_state(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.mkdir("run")
    solver = SGDSolver(solver_param('momentum: 0.9 snapshot_prefix: "run/t"'))
    solver.step(2)
    solver.snapshot()
    os.rename("run", "moved")
    other = SGDSolver(solver_param('snapshot_prefix: "x"'))
    other.restore("moved/t_iter_2.solverstate")
    assert other.iter == 2
    np.testing.assert_array_equal(weights(other.net)[0], weights(solver.net)[0])


def test_restore_with_another_net_is_a_clear_error(tmp_path):
    solver = SGDSolver(solver_param(f'snapshot_prefix: "{tmp_path}/t"'))
    solver.snapshot()
    adam = AdamSolver(solver_param(f'type: "Adam" snapshot_prefix: "{tmp_path}/u"'))
    with pytest.raises(MinicaffeError, match="2 history blob"):
        adam.restore(f"{tmp_path}/t_iter_0.solverstate")


# ---------------------------------------------------------------- signals

def test_signal_handler_maps_signals_and_restores_the_old_handlers():
    previous = signal.getsignal(signal.SIGINT)
    with SignalHandler() as handler:
        assert handler.check_for_signals() == "none"
        os.kill(os.getpid(), signal.SIGINT)
        assert handler.check_for_signals() == "stop"
        assert handler.check_for_signals() == "none"
        os.kill(os.getpid(), signal.SIGHUP)
        assert handler.check_for_signals() == "snapshot"
    assert signal.getsignal(signal.SIGINT) is previous


def test_sigint_during_solve_snapshots_and_stops(tmp_path, capsys):
    solver = SGDSolver(solver_param(f'max_iter: 100 snapshot_after_train: true snapshot_prefix: "{tmp_path}/t"'))
    previous = signal.getsignal(signal.SIGINT)
    calls = []
    forward_backward = solver.net.forward_backward

    def interrupted():
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return forward_backward()

    solver.net.forward_backward = interrupted
    solver.solve()
    assert solver.iter == 3 and solver.requested_early_exit
    assert sorted(os.listdir(tmp_path)) == ["t_iter_3.caffemodel", "t_iter_3.solverstate"]
    assert "Optimization stopped early." in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is previous


def test_sighup_snapshots_and_continues(tmp_path):
    solver = SGDSolver(solver_param(f'max_iter: 4 snapshot_prefix: "{tmp_path}/t"'))
    requests = iter(["none", "snapshot"])
    solver.action_request_function = lambda: next(requests, "none")
    solver.solve()
    assert solver.iter == 4
    assert sorted(os.listdir(tmp_path)) == ["t_iter_2.caffemodel", "t_iter_2.solverstate"]


# ---------------------------------------------------------------- engine choice

def test_building_a_solver_leaves_the_engine_alone():
    """As in pycaffe: solver_mode is for `minicaffe train`; a script picks the engine with
    set_mode_cpu / set_mode_gpu, and a solver it builds does not switch it."""
    p = solver_param("")
    p.solver_mode = caffe_pb2.SolverParameter.GPU
    with common.using_mode(common.CPU):
        SGDSolver(p).step(1)
        assert common.mode() == common.CPU


def test_a_required_device_without_opencl_is_an_error(monkeypatch):
    import minicaffe.engine as engine
    monkeypatch.setattr(engine, "opencl_problem", lambda: "no OpenCL platform found")
    with pytest.raises(MinicaffeError, match="GPU device 1 was asked for.*no OpenCL platform found"):
        select_mode(True, 1, required=True)


def test_select_mode_uses_the_device_when_opencl_works(monkeypatch):
    import minicaffe.engine as engine
    monkeypatch.setattr(engine, "opencl_problem", lambda: "")
    old_mode, old_device = common.mode(), common.device_id()
    try:
        assert select_mode(True, 3) == common.GPU and common.device_id() == 3
        assert select_mode(False, 3) == common.CPU
    finally:
        common.set_mode(old_mode)
        common.set_device(old_device)


@pytest.mark.opencl
def test_a_device_that_does_not_exist_is_an_error_listing_the_devices(monkeypatch):
    from minicaffe import opencl
    monkeypatch.delenv("MINICAFFE_DEVICE", raising=False)
    old_device = common.device_id()
    try:
        for required in (False, True):  # a typo in device_id is never silently ignored
            with pytest.raises(MinicaffeError, match="OpenCL device '99' does not exist") as error:
                select_mode(True, 99, required=required)
            assert common.device_id() == old_device  # the setting is left as it was
            assert opencl.device().device.name in str(error.value)
    finally:
        common.set_device(old_device)


# ---------------------------------------------------------------- the update on the device
#
# The OpenCL update kernels (opencl/sgd.cl, nesterov.cl, adam.cl) against the numpy
# update, on a net whose one layer computes on the host in both modes (like the data
# layer): the parameters, diffs and history still live on the device in GPU mode, so
# every ApplyUpdate step runs there. Independent of which layers have kernels.

def linear_net(lr_mult=(1, 2), decay_mult=(1, 0.5)):
    return f"""
name: "linear"
layer {{ name: "data" type: "{SequenceDataLayer.type}" top: "x" top: "y"
        input_param {{ shape {{ dim: 4 dim: 3 }} shape {{ dim: 4 dim: 2 }} }} }}
layer {{ name: "fit" type: "{LinearLossLayer.type}" bottom: "x" bottom: "y" top: "loss"
        param {{ lr_mult: {lr_mult[0]} decay_mult: {decay_mult[0]} }}
        param {{ lr_mult: {lr_mult[1]} decay_mult: {decay_mult[1]} }}
        inner_product_param {{ num_output: 2 }} }}
"""


UPDATE_SETTINGS = [
    'momentum: 0.9 weight_decay: 0.01 lr_policy: "multistep" gamma: 0.5 stepvalue: 2',
    'momentum: 0.8 weight_decay: 0.02 regularization_type: "L1" clip_gradients: 0.05 iter_size: 2',
    'type: "Nesterov" momentum: 0.9 weight_decay: 0.01 clip_gradients: 0.1',
    'type: "Adam" base_lr: 0.05 momentum: 0.9 momentum2: 0.99 weight_decay: 0.01',
]


def linear_solver(extra, mode_name, prefix=None):
    snap = f' snapshot_prefix: "{prefix}"' if prefix else ""
    text = (f"net_param {{ {linear_net()} }}\n"
            f'base_lr: 0.1 lr_policy: "fixed" max_iter: 6 display: 0 solver_mode: {mode_name} '
            f"random_seed: 7 snapshot_after_train: false {extra}{snap}")
    common.set_mode(mode_name.lower())  # a script picks the engine; the solver keeps it
    return get_solver(text_format.Merge(text, caffe_pb2.SolverParameter()))


@pytest.mark.opencl
@pytest.mark.parametrize("extra", UPDATE_SETTINGS)
def test_device_update_matches_numpy(extra):
    results = {}
    for mode_name in ("CPU", "GPU"):
        solver = linear_solver(extra, mode_name)
        assert common.mode() == mode_name.lower()
        solver.step(4)
        results[mode_name] = ([p.cpu_data().copy() for p in solver.net.learnable_params],
                              [h.cpu_data().copy() for h in solver.history])
    (w_cpu, h_cpu), (w_gpu, h_gpu) = results["CPU"], results["GPU"]
    assert len(h_gpu) == len(h_cpu)
    for a, b in zip(w_gpu + h_gpu, w_cpu + h_cpu):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.opencl
def test_device_clipping_logs_the_norm(capsys):
    norms = []
    for mode_name in ("CPU", "GPU"):
        linear_solver('clip_gradients: 0.01 display: 1', mode_name).step(1)
        line = re.search(r"L2 norm (\S+) > 0.01\) by scale factor (\S+)", capsys.readouterr().err)
        assert line, mode_name
        norms.append(float(line[1]))
    assert norms[1] == pytest.approx(norms[0], rel=1e-5)


@pytest.mark.opencl
@pytest.mark.parametrize("extra", [UPDATE_SETTINGS[0], UPDATE_SETTINGS[3]])
@pytest.mark.parametrize("first, second", [("CPU", "GPU"), ("GPU", "CPU")])
def test_a_solverstate_from_one_engine_resumes_on_the_other(tmp_path, extra, first, second):
    straight = linear_solver(extra, first, tmp_path / "a")
    straight.step(3)
    straight.snapshot()
    straight.step(3)
    resumed = linear_solver(extra, second, tmp_path / "b")
    assert common.mode() == second.lower()
    resumed.restore(tmp_path / "a_iter_3.solverstate")
    resumed.step(3)
    assert resumed.iter == straight.iter == 6 and resumed.current_step == straight.current_step
    for a, b in zip(resumed.net.learnable_params + resumed.history,
                    straight.net.learnable_params + straight.history):
        np.testing.assert_allclose(a.cpu_data(), b.cpu_data(), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- logs that Caffe's tools parse

GLOG = re.compile(r"^[IWEF](\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6}) +\d+ [\w.]+:\d+\] ")


def extract_datetime_from_line(line, year):
    """extract_seconds.py's parser, ported to Python 3 line for line."""
    line = line.strip().split()
    month, day = int(line[0][1:3]), int(line[0][3:])
    timestamp = line[1]
    pos = timestamp.rfind(".")
    hour, minute, second = (int(x) for x in timestamp[:pos].split(":"))
    return datetime.datetime(year, month, day, hour, minute, second, int(timestamp[pos + 1:]))


def parse_log(lines):
    """parse_log.py's parse_log, ported to Python 3 (same regexes, same row logic)."""
    regex_iteration = re.compile(r"Iteration (\d+)")
    regex_train_output = re.compile(r"Train net output #(\d+): (\S+) = ([\.\deE+-]+)")
    regex_test_output = re.compile(r"Test net output #(\d+): (\S+) = ([\.\deE+-]+)")
    regex_learning_rate = re.compile(r"lr = ([-+]?[0-9]*\.?[0-9]+([eE]?[-+]?[0-9]+)?)")
    year = datetime.date.today().year
    lines = iter(lines)
    start_time = next(extract_datetime_from_line(l, year) for l in lines if "Solving" in l)
    iteration, learning_rate_, train, test, train_row, test_row = -1, float("nan"), [], [], None, None

    def net_output(regex, row, rows, line, seconds):
        match = regex.search(line)
        if match:
            if not row or row["NumIters"] != iteration:
                if row:
                    rows.append(row)
                row = {"NumIters": iteration, "Seconds": seconds, "LearningRate": learning_rate_}
            row[match.group(2)] = float(match.group(3))
        if row and len(rows) >= 1 and len(row) == len(rows[0]):
            rows.append(row)
            row = None
        return rows, row

    for line in lines:
        match = regex_iteration.search(line)
        if match:
            iteration = float(match.group(1))
        if iteration == -1:
            continue
        seconds = (extract_datetime_from_line(line, year) - start_time).total_seconds()
        match = regex_learning_rate.search(line)
        if match:
            learning_rate_ = float(match.group(1))
        train, train_row = net_output(regex_train_output, train_row, train, line, seconds)
        test, test_row = net_output(regex_test_output, test_row, test, line, seconds)
    if len(train) > 1:
        train[0]["LearningRate"] = train[1]["LearningRate"]
    if len(test) > 1:
        test[0]["LearningRate"] = test[1]["LearningRate"]
    return train, test


def test_logs_parse_with_caffes_parse_log(capsys):
    p = solver_param('lr_policy: "inv" gamma: 0.0001 power: 0.75 base_lr: 0.01 display: 2 max_iter: 6 '
                     "test_iter: 2 test_interval: 3 test_compute_loss: true", data=SequenceDataLayer.type)
    SGDSolver(p).solve()
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(GLOG.match(line) for line in lines), [l for l in lines if not GLOG.match(l)][:3]
    train, test = parse_log(lines)
    assert [row["NumIters"] for row in train] == [0, 2, 4]
    # A row takes the last lr line seen; Caffe logs lr after the outputs, so a row carries
    # the previous display's rate (parse_log's own lag, the same on Caffe's logs).
    assert [row["LearningRate"] for row in train] == [0.01, 0.01, pytest.approx(0.0099985, rel=1e-5)]
    assert all(set(row) == {"NumIters", "Seconds", "LearningRate", "loss"} for row in train)
    assert [row["NumIters"] for row in test] == [0, 3, 6]
    assert all(row["Seconds"] >= 0 for row in train + test)
    text = "\n".join(lines)
    assert re.search(r"\] Iteration 2 \([\d.e+-]+ iter/s, [\d.e+-]+s/2 iters\), loss = [\d.e+-]+$", text, re.M)
    assert re.search(r"\]     Train net output #0: loss = (\S+) \(\* 1 = \1 loss\)$", text, re.M)
    assert re.search(r"\]     Test net output #0: loss = (\S+) \(\* 1 = \1 loss\)$", text, re.M)
    assert re.search(r"\] Test loss: [\d.e+-]+$", text, re.M)
    assert re.search(r"\] Iteration 6, loss = [\d.e+-]+$", text, re.M)
    assert text.rstrip().endswith("Optimization Done.")


def test_no_test_at_iteration_0_without_test_initialization(capsys):
    SGDSolver(solver_param("test_iter: 1 test_interval: 2 test_initialization: false max_iter: 2")).solve()
    err = capsys.readouterr().err
    assert "Iteration 0, Testing net" not in err and "Iteration 2, Testing net (#0)" in err


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal_and_log_lines_stay_whole(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert not glog.progress_enabled(io.StringIO())  # a pipe or a log file: no bar
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with glog.progress(10, "tiny") as bar:
        bar.update(3)
        logging.getLogger("minicaffe.test").info("Iteration 3, lr = 0.1")
        bar.update(3)
    text = terminal.getvalue()
    assert "tiny:" in text and "3/10" in text  # the bar was drawn
    # tqdm.write clears the bar with "\r", then prints the whole line.
    segments = [seg for line in text.split("\n") for seg in line.split("\r")]
    assert any(GLOG.match(seg) and seg.endswith("] Iteration 3, lr = 0.1") for seg in segments)
    monkeypatch.setenv("CI", "true")
    assert not glog.progress_enabled(terminal)


def test_multiline_messages_get_the_prefix_on_every_line(capsys):
    logging.getLogger("minicaffe.test").warning("first\nsecond")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(GLOG.match(line) and line.startswith("W") for line in lines)
    assert lines[1].endswith("] second")
