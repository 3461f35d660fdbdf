"""Lesson 08 check: lr policies against minicaffe.solver, SGD steps against SGDSolver."""
import numpy as np
import pytest
from google.protobuf import text_format

from minicaffe.proto import caffe_pb2
from minicaffe.solver import learning_rate
from minicaffe.solvers import get_solver

pytestmark = pytest.mark.lesson08

ITERS = [0, 1, 7, 99, 100, 101, 999, 5000, 10000, 123456]


def solver_param(**fields):
    """Solver settings as minicaffe reads them (the proto stores rates as float32)."""
    param = caffe_pb2.SolverParameter(**fields)
    param.solver_mode = param.CPU
    return param


def test_inv_known_answer(lesson):
    assert lesson.inv_lr(0.01, 1e-4, 0.75, 0) == pytest.approx(0.01)
    assert lesson.inv_lr(0.01, 1e-4, 0.75, 10000) == pytest.approx(0.01 * 2 ** -0.75)


@pytest.mark.parametrize("it", ITERS)
@pytest.mark.parametrize("gamma,power", [(1e-4, 0.75), (1e-3, 1.5), (0.1, 0.5)])
def test_inv_matches_minicaffe(lesson, it, gamma, power):
    param = solver_param(lr_policy="inv", base_lr=0.05, gamma=gamma, power=power)
    expected, _ = learning_rate(param, it)
    assert lesson.inv_lr(0.05, gamma, power, it) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("it", ITERS)
@pytest.mark.parametrize("gamma,stepsize", [(0.1, 100), (0.5, 7), (0.9, 5000)])
def test_step_matches_minicaffe(lesson, it, gamma, stepsize):
    param = solver_param(lr_policy="step", base_lr=0.05, gamma=gamma, stepsize=stepsize)
    expected, _ = learning_rate(param, it)
    assert lesson.step_lr(0.05, gamma, stepsize, it) == pytest.approx(expected, rel=1e-6)


def test_plain_sgd_known_answer(lesson):
    w, g, v = np.array([1.0, -2.0]), np.array([0.5, 0.5]), np.zeros(2)
    w_new, v_new = lesson.sgd_momentum_update(w, g, v, 0.1, 0.0, 0.0)
    np.testing.assert_allclose(w_new, [0.95, -2.05])
    np.testing.assert_allclose(v_new, [0.05, 0.05])
    np.testing.assert_array_equal(w, [1.0, -2.0], err_msg="leave the inputs alone")


TINY_NET = """
name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 3 dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 1 } } }
"""


@pytest.mark.parametrize("momentum,decay", [(0.9, 5e-4), (0.5, 0.1), (0.0, 0.0)])
def test_matches_sgd_solver(lesson, momentum, decay):
    """Feed the same gradients to minicaffe's SGDSolver and to the learner's update."""
    net_param = text_format.Parse(TINY_NET, caffe_pb2.NetParameter())
    param = solver_param(net_param=net_param, base_lr=0.1, lr_policy="inv", gamma=0.5, power=0.75,
                         momentum=momentum, weight_decay=decay, random_seed=3)
    solver = get_solver(param)
    params = solver.net.learnable_params  # weight (2, 4), bias (2,)
    mine = [(p.data.astype(np.float64).copy(), np.zeros(p.shape)) for p in params]
    rng = np.random.default_rng(0)
    for it in range(4):
        grads = [rng.normal(size=p.shape) for p in params]
        for p, g in zip(params, grads):
            p.diff = g
        solver.apply_update()
        solver.iter += 1
        rate = lesson.inv_lr(0.1, 0.5, 0.75, it)
        mine = [lesson.sgd_momentum_update(w, g, v, rate, momentum, decay)
                for (w, v), g in zip(mine, grads)]
        for p, (w, _) in zip(params, mine):
            np.testing.assert_allclose(w, p.data, rtol=1e-5, atol=1e-6,
                                       err_msg=f"weights differ after iteration {it + 1}")
