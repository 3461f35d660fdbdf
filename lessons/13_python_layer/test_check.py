"""Lesson 13 check: the two Python layers against hand-computed values, finite differences,
minicaffe's Scale layer, and a solver that trains them inside a Net."""
import sys

import numpy as np
import pytest
from google.protobuf import text_format

from minicaffe.blob import Blob
from minicaffe.layer import create_layer
from minicaffe.proto import caffe_pb2
from minicaffe.solvers import get_solver
from minicaffe.testing import GradientChecker

pytestmark = pytest.mark.lesson13

MODULE = "lesson13_layers"


@pytest.fixture(autouse=True)
def importable(lesson, monkeypatch):
    """python_param names a module: make the implementation under test importable as one."""
    monkeypatch.setitem(sys.modules, MODULE, lesson)


def python_layer(layer, param_str="", **fields):
    param = caffe_pb2.LayerParameter(name=layer, type="Python", **fields)
    param.python_param.module, param.python_param.layer = MODULE, layer
    param.python_param.param_str = param_str
    return create_layer(param)


def blob(values):
    values = np.asarray(values, dtype=np.float32)
    b = Blob(values.shape)
    b.data[...] = values
    return b


def test_smooth_l1_known_loss_and_gradients():
    # d = a - b = [[0.5, 3], [-2, 0]]: f(d) = [[0.125, 2.5], [1.5, 0]], sum 4.125, N = 2
    loss_layer = python_layer("SmoothL1LossLayer", loss_weight=[1.0])
    a, b, top = blob([[1.5, 3], [-2, 1]]), blob([[1, 0], [0, 1]]), Blob()
    loss_layer.setup([a, b], [top])
    assert loss_layer.forward([a, b], [top]) == pytest.approx(2.0625)
    assert top.shape == (1,)
    loss_layer.backward([top], [True, True], [a, b])
    np.testing.assert_allclose(a.diff, [[0.25, 0.5], [-0.5, 0]])
    np.testing.assert_allclose(b.diff, [[-0.25, -0.5], [0.5, 0]])


def test_smooth_l1_gradient_with_a_loss_weight():
    # The checker seeds the top's diff with 2, as a loss_weight of 2 would: a backward
    # that ignores top[0].diff is off by that factor. Values keep |d| away from the kink at 1.
    rng = np.random.default_rng(13)
    a = rng.uniform(-3, 3, (3, 4)).astype(np.float32)
    b = rng.uniform(-3, 3, (3, 4)).astype(np.float32)
    near_kink = np.abs(np.abs(a - b) - 1) < 0.1
    a[near_kink] += 0.3
    GradientChecker(1e-2, 1e-2, 1701).check_gradient_exhaustive(
        python_layer("SmoothL1LossLayer", loss_weight=[1.0]), [blob(a), blob(b)], [Blob()])


def test_channel_scale_starts_from_param_str():
    layer = python_layer("ChannelScaleLayer", param_str="0.5")
    layer.setup([blob(np.ones((2, 3, 4)))], [Blob()])
    assert len(layer.blobs) == 1, "setup should add one learnable blob"
    np.testing.assert_array_equal(layer.blobs[0].data, [0.5, 0.5, 0.5])


def run_scale(layer, x, w, dy, times=1):
    bottom, top = [blob(x)], [Blob()]
    layer.setup(bottom, top)
    layer.blobs[0].data[...] = w
    layer.blobs[0].diff[...] = 0
    layer.forward(bottom, top)
    top[0].diff[...] = dy
    for _ in range(times):
        layer.backward(top, [True], bottom)
    return top[0].data.copy(), bottom[0].diff.copy(), layer.blobs[0].diff.copy()


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (4, 2), (1, 5, 3)])
def test_channel_scale_matches_minicaffes_scale_layer(shape):
    rng = np.random.default_rng(7)
    x, dy = rng.normal(size=shape), rng.normal(size=shape)
    w = rng.normal(size=shape[1])
    scale = caffe_pb2.LayerParameter(name="scale", type="Scale")  # axis 1, one axis of weights
    expected = run_scale(create_layer(scale), x, w, dy)
    got = run_scale(python_layer("ChannelScaleLayer"), x, w, dy)
    for e, g, what in zip(expected, got, ("top data", "bottom diff", "weight diff")):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5, err_msg=what)


def test_parameter_gradients_accumulate():
    # The Net zeroes parameter diffs once per iteration; backward adds (iter_size relies on it).
    x, dy, w = np.arange(6.0).reshape(2, 3), np.ones((2, 3)), np.ones(3)
    once = run_scale(python_layer("ChannelScaleLayer"), x, w, dy)[2]
    twice = run_scale(python_layer("ChannelScaleLayer"), x, w, dy, times=2)[2]
    np.testing.assert_allclose(once, [3, 5, 7])
    np.testing.assert_allclose(twice, 2 * once)


def test_top_follows_the_batch_size():
    layer = python_layer("ChannelScaleLayer", param_str="3")
    top = Blob()
    layer.setup([blob(np.ones((2, 3)))], [top])
    layer.forward([blob(np.ones((5, 3)))], [top])
    assert top.shape == (5, 3)
    np.testing.assert_array_equal(top.data, np.full((5, 3), 3.0))


NET = """
layer { name: "x" type: "Input" top: "x" top: "t" input_param { shape { dim: 8 dim: 3 } } }
layer { name: "scale" type: "Python" bottom: "x" top: "y"
        python_param { module: "lesson13_layers" layer: "ChannelScaleLayer" param_str: "1" } }
layer { name: "loss" type: "Python" bottom: "y" bottom: "t" top: "loss" loss_weight: 1
        python_param { module: "lesson13_layers" layer: "SmoothL1LossLayer" } }
"""


def test_a_solver_trains_the_python_layers():
    # Targets t = x * [2, -1, 0.5]: the solver must find those scales in the learnable blob.
    param = caffe_pb2.SolverParameter(base_lr=0.5, momentum=0.9, lr_policy="fixed", max_iter=300,
                                      random_seed=1, display=0, snapshot_prefix="unused")
    text_format.Parse(NET, param.net_param)
    solver = get_solver(param)
    x = np.random.default_rng(0).uniform(-1, 1, (8, 3))
    solver.net.blobs["x"].data[...] = x
    solver.net.blobs["t"].data[...] = x * [2, -1, 0.5]
    solver.step(300)
    np.testing.assert_allclose(solver.net.params["scale"][0].data, [2, -1, 0.5], atol=0.02)
