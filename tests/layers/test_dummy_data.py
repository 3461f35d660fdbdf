"""DummyData: shapes (new and legacy), Caffe's constant-once / refill-every-forward rule,
filler statistics, both engines in a Net, errors.
Tests taking `mode` run once per engine (numpy, OpenCL); the known answers follow
Caffe's test_dummy_data_layer.cpp."""
import numpy as np
import pytest
from google.protobuf import text_format
from hypothesis import given
from hypothesis import strategies as st

from minicaffe import common
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.layers.dummy_data import DummyDataLayer
from minicaffe.net import Net
from minicaffe.proto import caffe_pb2
from minicaffe.testing.engines import compare_engines
from tests.strategies import layer_param, shapes


def dummy(num_tops=1, name="dummy", **param):
    layer = create_layer(layer_param("DummyData", name=name, dummy_data_param=param))
    tops = [Blob() for _ in range(num_tops)]
    layer.setup([], tops)
    return layer, tops


def test_legacy_dims_one_top_zeros(mode):
    # Caffe's OneTopConstant: no filler means zeros, before and after forward.
    layer, (a,) = dummy(num=[5], channels=[3], height=[2], width=[4])
    assert a.shape == (5, 3, 2, 4)
    np.testing.assert_array_equal(a.cpu_data(), 0)
    layer.forward([], [a])
    np.testing.assert_array_equal(a.cpu_data(), 0)


def test_legacy_dims_per_top_and_one_constant_filler(mode):
    # Caffe's TwoTopConstant: legacy fields given once or per top, one filler for both.
    layer, tops = dummy(2, num=[5], channels=[3], height=[2, 1], width=[4],
                        data_filler=[{"type": "constant", "value": 7}])
    assert [t.shape for t in tops] == [(5, 3, 2, 4), (5, 3, 1, 4)]
    for _ in range(2):
        for t in tops:
            np.testing.assert_array_equal(t.cpu_data(), 7)
        layer.forward([], tops)


def test_constant_gaussian_constant(mode):
    # Caffe's ThreeTopConstantGaussianConstant: the gaussian top is zero after setup and
    # freshly drawn on every forward; the constant tops are filled once.
    common.set_random_seed(3)
    layer, (a, b, c) = dummy(3, shape=[{"dim": [5, 3, 2, 4]}],
                             data_filler=[{"type": "constant", "value": 7},
                                          {"type": "gaussian", "mean": 3, "std": 0.01},
                                          {"type": "constant", "value": 9}])
    assert a.shape == b.shape == c.shape == (5, 3, 2, 4)
    np.testing.assert_array_equal(a.cpu_data(), 7)
    np.testing.assert_array_equal(b.cpu_data(), 0)
    np.testing.assert_array_equal(c.cpu_data(), 9)
    layer.forward([], [a, b, c])
    first = b.cpu_data().copy()
    np.testing.assert_allclose(first, 3, atol=0.01 * 6)  # within 6 sigma
    layer.forward([], [a, b, c])
    assert not np.array_equal(b.cpu_data(), first)
    np.testing.assert_allclose(b.cpu_data(), 3, atol=0.01 * 6)
    np.testing.assert_array_equal(a.cpu_data(), 7)
    np.testing.assert_array_equal(c.cpu_data(), 9)


def test_constant_top_is_never_refilled(mode):
    # Caffe fills constant tops only at setup: a value written later stays.
    layer, (a,) = dummy(shape=[{"dim": [2, 2]}], data_filler=[{"type": "constant", "value": 1}])
    a.mutable_cpu_data()[...] = 5
    layer.forward([], [a])
    np.testing.assert_array_equal(a.cpu_data(), 5)


def test_uniform_statistics(mode):
    # 20,000 draws of U(-2, 6): mean 2 and variance 64/12, within a few standard errors.
    common.set_random_seed(11)
    layer, (a,) = dummy(shape=[{"dim": [20000]}],
                        data_filler=[{"type": "uniform", "min": -2, "max": 6}])
    layer.forward([], [a])
    x = a.cpu_data()
    assert x.min() >= -2 and x.max() <= 6
    assert abs(x.mean() - 2) < 4 * np.sqrt(64 / 12 / 20000)
    assert abs(x.var() - 64 / 12) < 0.15


def test_one_shared_random_filler_refills_every_top(mode):
    layer, tops = dummy(2, shape=[{"dim": [3, 4]}, {"dim": [6]}],
                        data_filler=[{"type": "uniform", "min": 1, "max": 2}])
    assert [t.shape for t in tops] == [(3, 4), (6,)]
    layer.forward([], tops)
    for t in tops:
        assert np.all((t.cpu_data() >= 1) & (t.cpu_data() <= 2))


@given(num_tops=st.integers(1, 3), per_top=st.booleans(), data=st.data())
def test_shapes_property(mode, num_tops, per_top, data):
    dims = [data.draw(shapes(min_axes=0, max_axes=4, min_side=0, max_side=5))
            for _ in range(num_tops if per_top else 1)]
    value = data.draw(st.floats(-10, 10, width=32))
    layer, tops = dummy(num_tops, shape=[{"dim": list(d)} for d in dims],
                        data_filler=[{"type": "constant", "value": value}])
    assert [t.shape for t in tops] == (dims if per_top else dims * num_tops)
    layer.forward([], tops)
    for t in tops:
        np.testing.assert_array_equal(t.cpu_data(), np.float32(value))


def test_reshape_does_nothing(mode):
    layer, (a,) = dummy(shape=[{"dim": [2, 3]}])
    a.reshape(7)
    layer.reshape([], [a])
    assert a.shape == (7,)


@pytest.mark.opencl
def test_engines_agree():
    param = layer_param("DummyData", dummy_data_param={
        "shape": [{"dim": [4, 3, 5]}, {"dim": [4]}],
        "data_filler": [{"type": "gaussian", "std": 2}, {"type": "constant", "value": 1.5}]})
    tops = compare_engines(param, [], top_count=2, backward=False)
    assert tops[0].std() > 1 and np.all(tops[1] == 1.5)


NET = """
name: "dummy_net"
layer { name: "data" type: "DummyData" top: "data" top: "label"
        dummy_data_param { shape { dim: 4 dim: 6 } shape { dim: 4 }
                           data_filler { type: "constant" value: 1 }
                           data_filler { type: "constant" value: 2 } } }
layer { name: "target" type: "DummyData" top: "target"
        dummy_data_param { num: 4 channels: 3 height: 1 width: 1 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "constant" value: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "target" top: "loss" }
"""


def test_feeds_a_net(mode):
    # data = 1, weights 0.5, bias 0: every output is 6 * 0.5 = 3; the target is zeros
    # (4x3x1x1 from the legacy fields), so the loss is 4 * 3 * 3**2 / (2 * 4) = 13.5.
    net = Net(text_format.Parse(NET, caffe_pb2.NetParameter()), caffe_pb2.TRAIN)
    for _ in range(2):
        assert net.forward()["loss"] == pytest.approx(13.5)
    np.testing.assert_array_equal(net.blobs["label"].data, 2)
    net.backward()  # DummyData has no bottoms: nothing to do, and nothing to fail
    np.testing.assert_allclose(net.params["ip"][0].diff, 3)  # d loss / d w = mean of 3 * 1


def test_device_body_is_the_host_body():
    assert DummyDataLayer.forward_gpu is DummyDataLayer.forward_cpu


@pytest.mark.parametrize("param, tops, message", [
    ({"shape": [{"dim": [1]}], "data_filler": [{"type": "constant"}] * 2}, 3,
     r"give data_filler 0 times, once, or once per top blob \(3\); got 2"),
    ({"shape": [{"dim": [1]}], "num": [1], "channels": [1], "height": [1], "width": [1]}, 1,
     "both shape and the legacy"),
    ({"num": [1], "channels": [1], "height": [1]}, 1,
     r"give width once, or once per top blob \(1\); got 0"),
    ({"num": [1, 2], "channels": [1], "height": [1], "width": [1]}, 3,
     r"give num once, or once per top blob \(3\); got 2"),
    ({"shape": [{"dim": [1]}] * 2}, 3, r"give shape once, or once per top blob \(3\); got 2"),
    ({}, 1, r"give shape once, or once per top blob \(1\); got 0"),
    ({"shape": [{"dim": [1]}], "data_filler": [{"type": "gausian"}]}, 1,
     "unknown data_filler type 'gausian'"),
])
def test_bad_params(mode, param, tops, message):
    with pytest.raises(MinicaffeError, match=r"DummyData layer 'bad': " + message):
        dummy(tops, name="bad", **param)


def test_filler_that_does_not_fit_the_top(mode):
    layer, tops = dummy(name="bad", shape=[{"dim": [2, 3]}], data_filler=[{"type": "bilinear"}])
    with pytest.raises(MinicaffeError, match="DummyData layer 'bad': .*bilinear filler needs a"):
        layer.forward([], tops)


def test_takes_no_bottom(mode):
    layer = create_layer(layer_param("DummyData", name="bad",
                                     dummy_data_param={"shape": [{"dim": [1]}]}))
    with pytest.raises(MinicaffeError, match="DummyData layer 'bad' takes exactly 0 bottom"):
        layer.setup([Blob(1)], [Blob()])
