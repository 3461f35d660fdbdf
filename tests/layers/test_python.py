"""Python: a user's class as a layer. Known answers through pycaffe's pyloss example,
param_str and phase, learnable blobs the solver updates and snapshots, both engines (the
user's code runs on the host), gradients, and the errors that name module, class, layer.

The user classes live in this module, which the layers import as `tests.layers.test_python`
(the name pytest imports it under), as Caffe imports `python_param.module`.
"""
import numpy as np
import pytest
from google.protobuf import text_format
from hypothesis import given
from hypothesis import strategies as st

import minicaffe
from minicaffe import opencl
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.net import Net
from minicaffe.proto import caffe_pb2
from minicaffe.solvers import get_solver
from minicaffe.testing import GradientChecker
from minicaffe.testing.engines import compare_engines
from tests.strategies import blob_from, blobs, layer_param, shapes

MODULE = __name__


# ---- the user's classes
class EuclideanLossLayer(minicaffe.Layer):
    """pycaffe's examples/pycaffe/layers/pyloss.py, but scaled by the top's diff.

    The example ignores `top[0].diff` (the loss weight), so it is right only under
    `loss_weight: 1`; the gradient checker seeds a weight of 2, so this copy honours it.
    """

    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise Exception("Need two inputs to compute distance.")

    def reshape(self, bottom, top):
        if bottom[0].count != bottom[1].count:
            raise Exception("Inputs must have the same dimension.")
        self.diff = np.zeros_like(bottom[0].data, dtype=np.float32)
        top[0].reshape(1)

    def forward(self, bottom, top):
        self.diff[...] = bottom[0].data - bottom[1].data
        top[0].data[...] = np.sum(self.diff ** 2) / bottom[0].num / 2.

    def backward(self, top, propagate_down, bottom):
        for i in range(2):
            if propagate_down[i]:
                sign = 1 if i == 0 else -1
                bottom[i].diff[...] = sign * top[0].diff[0] * self.diff / bottom[i].num


class AffineLayer(minicaffe.Layer):
    """y = w * x + b with learnable scalars w and b; param_str gives w's start value."""

    def setup(self, bottom, top):
        self.seen = (self.param_str, self.phase, self.type)
        self.blobs.add_blob(1)
        self.blobs.add_blob(1)
        self.blobs[0].data[...] = float(self.param_str or 1)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.blobs[0].data * bottom[0].data + self.blobs[1].data

    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[...] += np.sum(top[0].diff * bottom[0].data)
        self.blobs[1].diff[...] += np.sum(top[0].diff)
        if propagate_down[0]:
            bottom[0].diff[...] = self.blobs[0].data * top[0].diff


class FailsInForward(minicaffe.Layer):
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        raise ValueError("the user's bug")


class ForwardOnly(minicaffe.Layer):
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data


class NoReshape(minicaffe.Layer):
    def forward(self, bottom, top):
        pass


class NotALayer:
    def __init__(self, param):
        pass


def python(layer, param_str="", **fields):
    return create_layer(layer_param("Python", name="py", python_param={
        "module": MODULE, "layer": layer, "param_str": param_str}, **fields))


def run(layer, a, b):
    bottom, top = [blob_from(a), blob_from(b)], [Blob()]
    layer.setup(bottom, top)
    loss = layer.forward(bottom, top)
    layer.backward(top, [True, True], bottom)
    return loss, top[0], bottom


# ---- known answers
def test_pyloss_known_loss_and_gradients(mode):
    # d = a - b = [[1, 2], [2, 3]]: |d|^2 = 18, over 2N = 4 -> 4.5; dE/da = d / N, dE/db = -d / N
    loss, top, bottom = run(python("EuclideanLossLayer", loss_weight=[1.0]),
                            [[1, 2], [3, 4]], [[0, 0], [1, 1]])
    assert loss == pytest.approx(4.5)
    assert top.shape == (1,) and float(top.cpu_data()[0]) == pytest.approx(4.5)
    np.testing.assert_allclose(bottom[0].cpu_diff(), [[0.5, 1], [1, 1.5]])
    np.testing.assert_allclose(bottom[1].cpu_diff(), [[-0.5, -1], [-1, -1.5]])


def test_no_loss_without_a_loss_weight(mode):
    # A Python layer derives from Layer, not LossLayer: without loss_weight its top is
    # no part of the objective (which is why linreg.prototxt says `loss_weight: 1`).
    loss, top, _ = run(python("EuclideanLossLayer"), [[1, 2], [3, 4]], [[0, 0], [1, 1]])
    assert loss == 0 and float(top.cpu_data()[0]) == pytest.approx(4.5)


def test_param_str_phase_and_type_are_set_before_setup():
    layer = python("AffineLayer", param_str="2.5", phase="TEST")
    x = blob_from([[1, -2]])
    layer.setup([x], [Blob()])
    assert layer.python_layer.seen == ("2.5", caffe_pb2.TEST, "Python")
    assert layer.python_layer.blobs is layer.blobs and len(layer.blobs) == 2
    assert layer.seen == ("2.5", caffe_pb2.TEST, "Python")  # read through, as in pycaffe


def test_learnable_blobs_known_answer(mode):
    layer = python("AffineLayer", param_str="3")
    x, y = blob_from([[1, -2], [0.5, 4]]), Blob()
    layer.setup([x], [y])
    layer.blobs[1].data[...] = 1
    layer.forward([x], [y])
    np.testing.assert_allclose(y.cpu_data(), [[4, -5], [2.5, 13]])
    y.diff[...] = 1
    for b in layer.blobs:
        b.diff[...] = 0
    layer.backward([y], [True], [x])
    np.testing.assert_allclose(layer.blobs[0].cpu_diff(), [3.5])   # sum of x
    np.testing.assert_allclose(layer.blobs[1].cpu_diff(), [4])     # sum of dy
    np.testing.assert_allclose(x.cpu_diff(), [[3, 3], [3, 3]])


# ---- gradients (Caffe's EuclideanLoss settings for the loss)
@st.composite
def pairs(draw):
    shape = draw(shapes(max_side=4))
    return draw(blobs(shape=shape)), draw(blobs(shape=shape))


@given(pairs())
def test_pyloss_gradient(mode, pair):
    GradientChecker(1e-2, 1e-2, 1701).check_gradient_exhaustive(
        python("EuclideanLossLayer", loss_weight=[1.0]), list(pair), [Blob()])


@given(blobs(max_axes=3, max_side=3))
def test_learnable_layer_gradient(mode, x):
    # The checker perturbs the parameter blobs too: add_blob's blobs are the layer's blobs.
    GradientChecker(1e-2, 1e-3, 1701).check_gradient_exhaustive(
        python("AffineLayer", param_str="0.7"), [x], [Blob()])


# ---- the OpenCL engine: the same host code, the blobs synced around it
@given(pairs())
def test_engines_agree(gpu_only, pair):
    a, b = (blob.cpu_data().copy() for blob in pair)
    compare_engines(layer_param("Python", python_param={"module": MODULE,
                                                        "layer": "EuclideanLossLayer"}), [a, b])


def test_device_values_reach_the_users_code(gpu_only):
    # Bottoms whose fresh values are on the device only: the user reads them on the host.
    layer = python("EuclideanLossLayer", loss_weight=[1.0])
    a, b = blob_from([[0, 0], [0, 0]]), blob_from([[0, 0], [1, 1]])
    top = [Blob()]
    layer.setup([a, b], top)
    opencl.fill(a.mutable_gpu_data(), a.count, 2.0)
    # d = a - b = [[2, 2], [1, 1]]: |d|^2 = 10, over 2N = 4
    assert layer.forward([a, b], top) == pytest.approx(2.5)
    layer.backward(top, [True, True], [a, b])
    np.testing.assert_allclose(a.cpu_diff(), [[1, 1], [0.5, 0.5]])


# ---- in a Net, under a solver
NET = """
name: "affine"
layer { name: "x" type: "Input" top: "x" top: "t" input_param { shape { dim: 4 dim: 1 } } }
layer { name: "affine" type: "Python" bottom: "x" top: "y"
        python_param { module: "%s" layer: "AffineLayer" param_str: "0" } }
layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "loss" }
""" % MODULE


def affine_solver(tmp_path, mode):
    param = caffe_pb2.SolverParameter(base_lr=0.1, lr_policy="fixed", max_iter=200,
                                      snapshot_prefix=str(tmp_path / "affine"), random_seed=1,
                                      display=0)
    param.solver_mode = param.GPU if mode == "gpu" else param.CPU
    text_format.Parse(NET, param.net_param)
    solver = get_solver(param)
    solver.net.blobs["x"].data[...] = np.array([[1], [2], [3], [4]])
    solver.net.blobs["t"].data[...] = np.array([[5], [7], [9], [11]])  # t = 2x + 3
    return solver


def test_solver_learns_and_snapshots_the_python_layers_blobs(mode, tmp_path):
    solver = affine_solver(tmp_path, mode)
    solver.step(200)
    w, b = (float(blob.cpu_data()[0]) for blob in solver.net.params["affine"])
    assert w == pytest.approx(2, abs=0.05) and b == pytest.approx(3, abs=0.15)
    solver.snapshot()
    weights = tmp_path / "affine_iter_200.caffemodel"
    net = Net(solver.param.net_param, caffe_pb2.TEST, weights=str(weights))
    assert [float(b.cpu_data()[0]) for b in net.params["affine"]] == [pytest.approx(w),
                                                                      pytest.approx(b)]


# ---- bad input
@pytest.mark.parametrize("python_param, message", [
    ({"layer": "AffineLayer"}, r"needs both `module`"),
    ({"module": "no_such_module_here", "layer": "X"},
     r"cannot import module 'no_such_module_here' \(ModuleNotFoundError"),
    ({"module": MODULE, "layer": "Missing"}, r"has no class 'Missing'"),
    ({"module": MODULE, "layer": "NotALayer"}, r"NotALayer is not a subclass of minicaffe.Layer"),
])
def test_bad_python_param(python_param, message):
    with pytest.raises(MinicaffeError, match=message) as err:
        create_layer(layer_param("Python", name="user", python_param=python_param))
    assert "Python layer 'user'" in str(err.value)


def test_a_missing_reshape_is_named_once_setup_has_run():
    with pytest.raises(MinicaffeError, match=r"Python layer 'py' .*class NoReshape defines no reshape"):
        python("NoReshape").setup([blob_from([1.0])], [Blob()])


def test_the_users_exception_keeps_its_type():
    # pycaffe lets the user's exception through; scripts catch it by its type.
    with pytest.raises(ValueError) as err:
        layer = python("FailsInForward")
        x = blob_from([[1, 2]])
        layer.setup([x], [Blob()])
        layer.forward([x], [Blob()])
    assert isinstance(err.value, MinicaffeError)
    assert "the user's bug" in str(err.value)


def test_an_exception_in_user_code_names_module_class_and_layer(mode):
    layer = python("FailsInForward")
    x = blob_from([[1, 2]])
    layer.setup([x], [Blob()])
    with pytest.raises(MinicaffeError) as err:
        layer.forward([x], [Blob()])
    message = str(err.value)
    assert f"Python layer 'py' ({MODULE}.FailsInForward)" in message
    assert "forward() raised ValueError: the user's bug" in message
    assert "test_python.py:" in message  # the user's line


def test_user_check_in_setup_and_reshape_is_reported():
    with pytest.raises(MinicaffeError, match=r"setup\(\) raised Exception: Need two inputs"):
        python("EuclideanLossLayer").setup([blob_from([1.0])], [Blob()])
    with pytest.raises(MinicaffeError, match=r"reshape\(\) raised Exception: Inputs must have"):
        python("EuclideanLossLayer").setup([blob_from([1.0]), blob_from([1.0, 2.0])], [Blob()])


def test_missing_backward_is_an_error_only_when_a_gradient_is_needed(mode):
    layer = python("ForwardOnly")
    x, y = blob_from([[1, 2]]), Blob()
    layer.setup([x], [y])
    layer.forward([x], [y])
    np.testing.assert_allclose(y.cpu_data(), [[1, 2]])
    with pytest.raises(MinicaffeError, match=r"ForwardOnly defines no backward"):
        layer.backward([y], [True], [x])
