"""AdaGrad, RMSProp and AdaDelta: updates worked by hand, Caffe's settings checks, the
legacy `solver_type` enum, exact resume through a `.solverstate`, both engines, and
Caffe's own example solver files.

The shared solver machinery (lr policies, clipping, iter_size, snapshots) is tested in
test_solver.py; these tests reuse its stand-in layers and helpers.
"""
import math
import re

import numpy as np
import pytest
from google.protobuf import text_format
from hypothesis import given
from hypothesis import strategies as st

from minicaffe import common
from minicaffe.common import MinicaffeError
from minicaffe.proto import caffe_pb2
from minicaffe.solver import read_solver_file
from minicaffe.solvers import AdaDeltaSolver, AdaGradSolver, RMSPropSolver, get_solver
from tests import zoo
from tests.test_solver import (SequenceDataLayer, hand_gradients, linear_solver, net_text,
                               registered_test_layers, set_inputs, solver_param, weights)


@pytest.fixture(scope="module", autouse=True)
def stand_in_layers():
    with registered_test_layers():
        yield


@pytest.fixture(autouse=True)
def keep_engine():
    old = common.mode()
    yield
    common.set_mode(old)


# ---------------------------------------------------------------- one weight, worked by hand
#
# The net: w x with x = 1, no bias, against y = 0 under EuclideanLoss, so
# E(w) = w^2 / 2 and the gradient is g = w. Every number below is worked out by hand.

def scalar_solver(extra, w0, mode):
    net = """
name: "scalar"
layer { name: "data" type: "Input" top: "x" top: "y"
        input_param { shape { dim: 1 dim: 1 } shape { dim: 1 dim: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "p"
        inner_product_param { num_output: 1 bias_term: false } }
layer { name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "y" top: "loss" }
"""
    solver = get_solver(solver_param(extra, net=net, mode=mode))
    solver.net.params["ip"][0].data[...] = w0
    set_inputs(solver.net, np.ones((1, 1)), np.zeros((1, 1)))
    return solver


def run_scalar(solver, steps):
    """w after each of `steps` iterations, and the history blobs' values at the end."""
    ws = []
    for _ in range(steps):
        solver.step(1)
        ws.append(float(solver.net.params["ip"][0].data.item()))
    return ws, [float(h.cpu_data().item()) for h in solver.history]


def test_adagrad_by_hand(mode):
    # base_lr 1, w0 = 4, delta 1e-8 (negligible at this scale):
    #   step 1: g = 4, h = 0 + 16 = 16, step = 4 / sqrt(16) = 1         -> w = 3
    #   step 2: g = 3, h = 16 + 9 = 25, step = 3 / sqrt(25) = 0.6       -> w = 2.4
    # (AdaGrad's first step is always lr * sign(g), whatever |g| is.)
    solver = scalar_solver('type: "AdaGrad" base_lr: 1', 4.0, mode)
    assert isinstance(solver, AdaGradSolver)
    ws, history = run_scalar(solver, 2)
    np.testing.assert_allclose(ws, [3.0, 2.4], rtol=1e-6)
    np.testing.assert_allclose(history, [25.0], rtol=1e-6)


def test_adagrad_with_weight_decay_by_hand(mode):
    # base_lr 0.5, weight_decay 0.25 (L2), w0 = 4: the decayed gradient is g = w + 0.25 w.
    #   step 1: g = 5,     h = 25,          step = 0.5 * 5 / 5 = 0.5                 -> w = 3.5
    #   step 2: g = 4.375, h = 25 + 19.140625 = 44.140625 (= 6.64383...^2),
    #           step = 0.5 * 4.375 / 6.643841... = 0.329253...                     -> w = 3.170747...
    solver = scalar_solver('type: "AdaGrad" base_lr: 0.5 weight_decay: 0.25', 4.0, mode)
    ws, history = run_scalar(solver, 2)
    np.testing.assert_allclose(ws, [3.5, 3.5 - 0.5 * 4.375 / math.sqrt(44.140625)], rtol=1e-6)
    np.testing.assert_allclose(ws[1], 3.170747, rtol=1e-6)
    np.testing.assert_allclose(history, [44.140625], rtol=1e-6)


def test_rmsprop_by_hand(mode):
    # base_lr 1, rms_decay 0.75, w0 = 4:
    #   step 1: g = 4, h = 0.75 * 0 + 0.25 * 16 = 4,  step = 4 / sqrt(4) = 2     -> w = 2
    #   step 2: g = 2, h = 0.75 * 4 + 0.25 * 4  = 4,  step = 2 / sqrt(4) = 1     -> w = 1
    solver = scalar_solver('type: "RMSProp" base_lr: 1 rms_decay: 0.75', 4.0, mode)
    assert isinstance(solver, RMSPropSolver)
    ws, history = run_scalar(solver, 2)
    np.testing.assert_allclose(ws, [2.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(history, [4.0], rtol=1e-6)


def test_adadelta_by_hand(mode):
    # base_lr 0.5, momentum (the decay) 0.5, delta 1, w0 = 4; s and u start at 0.
    #   step 1: g = 4, s = 0.5 * 16 = 8, d = 4 * sqrt((0 + 1) / (8 + 1)) = 4/3,
    #           u = 0.5 * (4/3)^2 = 8/9 (the step BEFORE the rate), w = 4 - 0.5 * 4/3 = 10/3
    #   step 2: g = 10/3, s = 0.5 * 8 + 0.5 * 100/9 = 86/9,
    #           d = 10/3 * sqrt((8/9 + 1) / (86/9 + 1)) = 10/3 * sqrt(17/95) = 1.41007...,
    #           u = 0.5 * 8/9 + 0.5 * (100/9) (17/95) = 4/9 + 170/171,
    #           w = 10/3 - 0.5 * 1.41007... = 2.62830...
    solver = scalar_solver('type: "AdaDelta" base_lr: 0.5 momentum: 0.5 delta: 1', 4.0, mode)
    assert isinstance(solver, AdaDeltaSolver)
    ws, history = run_scalar(solver, 2)
    d2 = 10 / 3 * math.sqrt(17 / 95)
    np.testing.assert_allclose(ws, [10 / 3, 10 / 3 - 0.5 * d2], rtol=1e-6)
    np.testing.assert_allclose(ws[1], 2.628297, rtol=1e-6)
    # The history is every s, then every u: Caffe's order in a .solverstate.
    np.testing.assert_allclose(history, [86 / 9, 4 / 9 + 170 / 171], rtol=1e-6)


@given(w0=st.floats(0.05, 50) | st.floats(-50, -0.05), lr=st.floats(1e-3, 1.0), rho=st.floats(0.0, 0.99))
def test_the_first_step_has_a_closed_form_size(mode, w0, lr, rho):
    # From zero history the first step of each rule depends on g = w0 only through its sign
    # (AdaGrad, RMSProp; delta = 1e-8 is negligible against |g| >= 0.05), or in closed form:
    #   AdaGrad:  h = g^2,            step = lr g / |g|                = lr sign(g)
    #   RMSProp:  h = (1 - rho) g^2,  step = lr g / (sqrt(1 - rho) |g|) = lr sign(g) / sqrt(1 - rho)
    #   AdaDelta: s = (1 - rho) g^2,  step = lr g sqrt(delta / (s + delta))   (u = 0), delta = 0.01
    w0 = float(np.float32(w0))  # the weight the net holds
    expected = {
        "AdaGrad": lr * math.copysign(1, w0),
        "RMSProp": lr * math.copysign(1, w0) / math.sqrt(1 - rho),
        "AdaDelta": lr * w0 * math.sqrt(0.01 / ((1 - rho) * w0 * w0 + 0.01)),
    }
    fields = {"AdaGrad": "", "RMSProp": f"rms_decay: {rho!r}", "AdaDelta": f"momentum: {rho!r} delta: 0.01"}
    for kind, step in expected.items():
        solver = scalar_solver(f'type: "{kind}" base_lr: {lr!r} {fields[kind]}', w0, mode)
        (w1,), _ = run_scalar(solver, 1)
        # w1 is float32: allow its rounding (a few ulps of w0) besides the step's own.
        tolerance = 4 * float(np.spacing(np.float32(abs(w0)))) + 1e-5 * abs(step)
        assert w1 == pytest.approx(w0 - step, rel=0, abs=tolerance), kind


# ---------------------------------------------------------------- a whole layer, against a float64 reference

def reference(kind, params, x, y, lr, lr_mult, decay, decay_mult, steps, rho=0.0, delta=1e-8):
    """The update rules written out in float64 over W and b of test_solver's tiny net
    (gradients by hand_gradients), with L2 weight decay: the analogue of Caffe's
    ComputeLeastSquaresUpdate."""
    params = [p.astype(np.float64) for p in params]
    hist = [np.zeros_like(p) for p in params + params]  # AdaDelta uses the second half too
    for _ in range(steps):
        grads = hand_gradients(params[0], params[1], x, y)
        for i, g in enumerate(grads):
            g = g + decay * decay_mult[i] * params[i]
            rate = lr * lr_mult[i]
            if kind == "AdaGrad":
                hist[i] += g * g
                step = rate * g / (np.sqrt(hist[i]) + delta)
            elif kind == "RMSProp":
                hist[i] = rho * hist[i] + (1 - rho) * g * g
                step = rate * g / (np.sqrt(hist[i]) + delta)
            else:
                hist[i] = rho * hist[i] + (1 - rho) * g * g
                d = g * np.sqrt((hist[i + 2] + delta) / (hist[i] + delta))
                hist[i + 2] = rho * hist[i + 2] + (1 - rho) * d * d
                step = rate * d
            params[i] = params[i] - step
    return params, hist[:2] if kind != "AdaDelta" else hist


# kind -> (solver fields, base_lr, the decay rho, delta)
REFERENCE_SETTINGS = {
    "AdaGrad": ("", 0.1, 0.0, 1e-8),
    "RMSProp": ("rms_decay: 0.9", 0.05, 0.9, 1e-8),
    "AdaDelta": ("momentum: 0.95 delta: 1e-6", 1.0, 0.95, 1e-6),
}


@pytest.mark.parametrize("kind", sorted(REFERENCE_SETTINGS))
def test_three_steps_match_the_reference_with_lr_and_decay_mults(mode, kind):
    fields, lr, rho, delta = REFERENCE_SETTINGS[kind]
    lr_mult, decay_mult, decay = (1.0, 2.0), (1.0, 0.5), 0.01
    extra = f'type: "{kind}" base_lr: {lr} weight_decay: {decay} {fields}'
    solver = get_solver(solver_param(extra, lr_mult=lr_mult, decay_mult=decay_mult, mode=mode))
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, 2)).astype(np.float32)
    set_inputs(solver.net, x, y)
    expected, expected_history = reference(kind, weights(solver.net), x, y, lr, lr_mult, decay, decay_mult,
                                           3, rho, delta)
    solver.step(3)
    for got, want in zip(weights(solver.net), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert len(solver.history) == len(expected_history)
    for got, want in zip(solver.history, expected_history):
        np.testing.assert_allclose(got.cpu_data(), want, rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------- settings Caffe checks

@pytest.mark.parametrize("extra, message", [
    ('type: "AdaGrad" momentum: 0.9', "momentum cannot be used with the AdaGrad solver (got momentum: 0.9)"),
    ('type: "RMSProp" momentum: 0.5', "momentum cannot be used with the RMSProp solver"),
    ('type: "RMSProp" rms_decay: 1', "rms_decay should lie in [0, 1), got 1"),
    ('type: "RMSProp" rms_decay: -0.5', "rms_decay should lie in [0, 1), got -0.5"),
])
def test_bad_settings_name_the_file(tmp_path, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(net_text())
    (tmp_path / "solver.prototxt").write_text(f'net: "net.prototxt" base_lr: 0.1 lr_policy: "fixed" '
                                              f'solver_mode: CPU {extra}')
    with pytest.raises(MinicaffeError, match=re.escape(message)) as err:
        get_solver("solver.prototxt")
    assert "solver.prototxt" in str(err.value)


def test_adadelta_takes_momentum_as_its_decay():
    # Unlike AdaGrad and RMSProp, AdaDelta reads momentum (Caffe's example sets 0.95).
    assert isinstance(get_solver(solver_param('type: "AdaDelta" momentum: 0.95')), AdaDeltaSolver)


@pytest.mark.parametrize("enum, cls", [("ADAGRAD", AdaGradSolver), ("RMSPROP", RMSPropSolver),
                                       ("ADADELTA", AdaDeltaSolver)])
def test_the_deprecated_solver_type_enum_picks_the_solver(enum, cls):
    solver = get_solver(solver_param(f"solver_type: {enum}"))
    assert type(solver) is cls and solver.param.type == cls.type


# ---------------------------------------------------------------- resume is exact

RESUME = 'weight_decay: 0.01 lr_policy: "step" gamma: 0.5 stepsize: 3 max_iter: 6 snapshot: 3'
KINDS = {"AdaGrad": 'type: "AdaGrad"', "RMSProp": 'type: "RMSProp" rms_decay: 0.9',
         "AdaDelta": 'type: "AdaDelta" base_lr: 1 momentum: 0.9 delta: 1e-6'}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_resume_from_a_solverstate_is_bitwise_a_straight_run(tmp_path, mode, kind):
    extra = f"{RESUME} {KINDS[kind]}"
    straight = get_solver(solver_param(extra + f' snapshot_prefix: "{tmp_path}/a"', data=SequenceDataLayer.type,
                                       mode=mode))
    straight.solve()
    state = caffe_pb2.SolverState()
    state.ParseFromString((tmp_path / "a_iter_3.solverstate").read_bytes())
    assert len(state.history) == (4 if kind == "AdaDelta" else 2)  # W and b (and their update averages)
    resumed = get_solver(solver_param(extra + f' snapshot_prefix: "{tmp_path}/b"', data=SequenceDataLayer.type,
                                      mode=mode))
    resumed.solve(resume_file=f"{tmp_path}/a_iter_3.solverstate")
    assert resumed.iter == 6
    for a, b in zip(straight.net.learnable_params + straight.history,
                    resumed.net.learnable_params + resumed.history):
        np.testing.assert_array_equal(a.cpu_data(), b.cpu_data())
    # Without the history the run differs: the state is what makes the resume exact.
    fresh = get_solver(solver_param(extra + f' snapshot_prefix: "{tmp_path}/c"', data=SequenceDataLayer.type,
                                    mode=mode))
    fresh.net.copy_trained_layers_from(f"{tmp_path}/a_iter_3.caffemodel")
    fresh.iter = 3
    for layer in fresh.net.data_layers():
        layer.set_batch_index(3)
    fresh.step(3)
    assert not np.array_equal(weights(fresh.net)[0], weights(straight.net)[0])


def test_an_adadelta_state_does_not_restore_into_adagrad(tmp_path):
    adadelta = get_solver(solver_param(f'{KINDS["AdaDelta"]} snapshot_prefix: "{tmp_path}/d"'))
    adadelta.snapshot()
    adagrad = get_solver(solver_param(f'type: "AdaGrad" snapshot_prefix: "{tmp_path}/g"'))
    with pytest.raises(MinicaffeError, match="4 history blob.*AdaGrad solver keeps 2"):
        adagrad.restore(f"{tmp_path}/d_iter_0.solverstate")


# ---------------------------------------------------------------- the engines agree

DEVICE_SETTINGS = [
    'type: "AdaGrad" weight_decay: 0.01 regularization_type: "L1" clip_gradients: 0.05 iter_size: 2',
    'type: "RMSProp" rms_decay: 0.95 weight_decay: 0.01 lr_policy: "multistep" gamma: 0.5 stepvalue: 2',
    'type: "AdaDelta" base_lr: 1 momentum: 0.95 delta: 1e-6 weight_decay: 0.01 clip_gradients: 0.1',
]


@pytest.mark.opencl
@pytest.mark.parametrize("extra", DEVICE_SETTINGS)
def test_device_update_matches_numpy(extra):
    results = {}
    for mode_name in ("CPU", "GPU"):
        solver = linear_solver(extra, mode_name)
        assert common.mode() == mode_name.lower()
        solver.step(4)
        results[mode_name] = [p.cpu_data().copy() for p in solver.net.learnable_params + solver.history]
    assert len(results["GPU"]) == len(results["CPU"])
    for gpu, cpu in zip(results["GPU"], results["CPU"]):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-5, atol=1e-7)


@pytest.mark.opencl
@pytest.mark.parametrize("extra", DEVICE_SETTINGS)
@pytest.mark.parametrize("first, second", [("CPU", "GPU"), ("GPU", "CPU")])
def test_a_solverstate_from_one_engine_resumes_on_the_other(tmp_path, extra, first, second):
    straight = linear_solver(extra, first, tmp_path / "a")
    straight.step(3)
    straight.snapshot()
    straight.step(3)
    resumed = linear_solver(extra, second, tmp_path / "b")
    resumed.restore(tmp_path / "a_iter_3.solverstate")
    resumed.step(3)
    assert resumed.iter == straight.iter == 6
    for a, b in zip(resumed.net.learnable_params + resumed.history,
                    straight.net.learnable_params + straight.history):
        np.testing.assert_allclose(a.cpu_data(), b.cpu_data(), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- Caffe's example solver files

EXAMPLES = {
    "lenet_adadelta_solver.prototxt": (AdaDeltaSolver, dict(base_lr=1.0, momentum=0.95, delta=1e-6)),
    "lenet_solver_rmsprop.prototxt": (RMSPropSolver, dict(base_lr=0.01, momentum=0.0, rms_decay=0.98)),
    "mnist_autoencoder_solver_adagrad.prototxt": (AdaGradSolver, dict(base_lr=0.01, weight_decay=0.0005)),
    "mnist_autoencoder_solver_adadelta.prototxt": (AdaDeltaSolver, dict(base_lr=1.0, momentum=0.95, delta=1e-8)),
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_caffes_example_solvers_build_their_solver(tmp_path, name):
    zoo.require_caffe_models()
    param = read_solver_file(zoo.CAFFE_MODELS / "examples" / "mnist" / name)
    # Keep every setting but the net (theirs reads LMDBs), the device and where snapshots go.
    param.ClearField("net")
    param.net_param.CopyFrom(text_format.Parse(net_text(), caffe_pb2.NetParameter()))
    param.solver_mode, param.snapshot_prefix = caffe_pb2.SolverParameter.CPU, str(tmp_path / "s")
    param.test_initialization = False
    solver = get_solver(param)
    cls, fields = EXAMPLES[name]
    assert type(solver) is cls
    for field, value in fields.items():
        assert getattr(solver.param, field) == pytest.approx(value, rel=1e-6), field
    before = weights(solver.net)
    solver.step(1)
    assert all(not np.array_equal(a, b) for a, b in zip(before, weights(solver.net)))
