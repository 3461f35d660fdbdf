"""Lesson 03 check: numeric gradients on known functions and on minicaffe's layers."""
import numpy as np
import pytest

from minicaffe.blob import Blob
from minicaffe.layer import create_layer
from minicaffe.proto import caffe_pb2

pytestmark = pytest.mark.lesson03


def test_known_derivatives(lesson):
    x = np.random.default_rng(0).normal(size=(3, 4))
    np.testing.assert_allclose(lesson.numeric_gradient(lambda: float(np.sum(x ** 2)), x), 2 * x,
                               atol=1e-8)
    np.testing.assert_allclose(lesson.numeric_gradient(lambda: float(np.sum(np.sin(x))), x, 1e-4),
                               np.cos(x), atol=1e-7)


def test_central_difference_accuracy(lesson):
    # d/dx x^3 at 1 is 3. Central differences with h = 1e-2 are off by h^2 = 1e-4,
    # one-sided differences by 3h = 3e-2.
    x = np.array([1.0])
    g = lesson.numeric_gradient(lambda: float(x[0] ** 3), x, 1e-2)
    assert g.shape == (1,)
    assert abs(g[0] - 3.0) < 1e-3, f"estimate {g[0]} is not a central difference"


def test_input_restored_and_shape_kept(lesson):
    x = np.random.default_rng(1).normal(size=(2, 3, 2))
    before = x.copy()
    g = lesson.numeric_gradient(lambda: float(np.prod(x[0]) + np.sum(x)), x)
    assert g.shape == x.shape
    np.testing.assert_array_equal(x, before, err_msg="numeric_gradient must restore x")


def test_only_one_element_moves_at_a_time(lesson):
    # f couples elements: each partial derivative needs the others at their values.
    x = np.array([1.0, 2.0, 3.0])
    g = lesson.numeric_gradient(lambda: float(x[0] * x[1] * x[2]), x, 1e-3)
    np.testing.assert_allclose(g, [6.0, 3.0, 2.0], rtol=1e-6)


@pytest.mark.parametrize("a,e,threshold,expected", [
    (1.0, 1.0005, 1e-3, True),      # absolute scale 1
    (1000.0, 1000.5, 1e-3, True),   # relative to the larger value
    (1000.0, 1002.0, 1e-3, False),
    (0.0, 0.002, 1e-3, False),
    (1e-4, 9e-4, 1e-3, True),       # tiny values: compared on the scale of 1
    (-2.0, 2.0, 1e-3, False),
])
def test_gradients_agree_scalars(lesson, a, e, threshold, expected):
    assert bool(lesson.gradients_agree(np.array([a]), np.array([e]), threshold)) is expected


def test_gradients_agree_needs_every_element(lesson):
    a = np.array([1.0, 2.0, 3.0])
    assert lesson.gradients_agree(a, a + 1e-5)
    assert not lesson.gradients_agree(a, a + np.array([0, 0, 0.1]))


def layer(kind, **fields):
    param = caffe_pb2.LayerParameter(name=kind.lower(), type=kind)
    for name, value in fields.items():
        section, field = name.split("__")
        setattr(getattr(param, section), field, value)
    return create_layer(param)


@pytest.mark.parametrize("kind,fields,shape", [
    ("InnerProduct", {"inner_product_param__num_output": 3}, (2, 4)),
    ("Sigmoid", {}, (2, 3, 2)),
])
@pytest.mark.parametrize("scale", [1.0, 1.1])
def test_checks_a_minicaffe_layer(lesson, kind, fields, shape, scale):
    """E = 1/2 sum(y^2), as Caffe's checker; a backward that is 10% off must be caught."""
    net_layer = layer(kind, **fields)
    bottom, top = [Blob(shape)], [Blob()]
    net_layer.setup(bottom, top)
    rng = np.random.default_rng(2)
    bottom[0].data = rng.normal(size=shape)
    for blob in net_layer.blobs:
        blob.data = rng.normal(size=blob.shape)

    def energy():
        net_layer.forward(bottom, top)
        return 0.5 * float(np.sum(top[0].cpu_data().astype(np.float64) ** 2))

    energy()
    top[0].diff = top[0].data
    for blob in net_layer.blobs:
        blob.diff = 0
    net_layer.backward(top, [True], bottom)
    checked = [bottom[0]] + net_layer.blobs
    analytic = [scale * b.cpu_diff().astype(np.float64) for b in checked]
    numeric = [lesson.numeric_gradient(energy, b.data, 1e-2) for b in checked]
    verdict = all(lesson.gradients_agree(a, e, 1e-3) for a, e in zip(analytic, numeric))
    assert verdict == (scale == 1.0)
