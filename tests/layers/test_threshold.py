"""Threshold: known values (the threshold itself and NaN give 0), the step property,
in-place use, engines agree, and no backward, as in Caffe (alone and inside a Net).
Tests taking `mode` run once per engine (numpy, OpenCL)."""
import numpy as np
import pytest
from google.protobuf import text_format
from hypothesis import given
from hypothesis import strategies as st

from minicaffe import TRAIN, Net
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.proto import caffe_pb2
from minicaffe.testing.engines import compare_engines
from tests.strategies import blob_from, blobs, layer_param


def threshold(t=None, name="threshold"):
    fields = {} if t is None else {"threshold_param": {"threshold": t}}
    return create_layer(layer_param("Threshold", name, **fields))


def forward(layer, bottom, top=None):
    top = Blob() if top is None else top
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    return top.cpu_data().copy()


def test_known_values(mode):
    x = [-1.0, 0.0, 1e-7, 0.5, 0.50001, np.nan, np.inf, -np.inf]
    # default threshold 0: strictly above 0 gives 1
    np.testing.assert_array_equal(forward(threshold(), blob_from(x)), [0, 0, 1, 1, 1, 0, 1, 0])
    np.testing.assert_array_equal(forward(threshold(0.5), blob_from(x)), [0, 0, 0, 0, 1, 0, 1, 0])


@given(bottom=blobs(low=-3.0, high=3.0), t=st.floats(-2.0, 2.0, width=32))
def test_step(mode, bottom, t):
    # Caffe's Test/Test2: every output is 0 or 1, 1 exactly where x > t; in place too.
    x = bottom.cpu_data().copy()
    y = forward(threshold(t), bottom)
    assert y.dtype == np.float32 and set(np.unique(y)) <= {0.0, 1.0}
    np.testing.assert_array_equal(y == 1, x > np.float32(t))
    np.testing.assert_array_equal(forward(threshold(t), bottom, top=bottom), y)


@pytest.mark.opencl
@given(bottom=blobs(low=-2.0, high=2.0), t=st.floats(-2.0, 2.0, width=32), seed=st.integers(0, 2**31 - 1))
def test_engines_agree(bottom, t, seed):
    x = bottom.cpu_data().copy()
    x.flat[0] = t  # the boundary value itself
    compare_engines(layer_param("Threshold", threshold_param={"threshold": t}), [x],
                    backward=False, rtol=0, atol=0)


def test_backward_is_not_implemented(mode):
    # Caffe's Backward is NOT_IMPLEMENTED: it fails whether or not a gradient is asked for.
    layer, bottom, top = threshold(name="step"), blob_from([1.0, -1.0]), Blob()
    forward(layer, bottom, top)
    for propagate in (True, False):
        with pytest.raises(MinicaffeError, match=r"Threshold layer 'step' has no backward"):
            layer.backward([top], [propagate], [bottom])


NET = """
layer { name: "in" type: "Input" top: "x" top: "y"
        input_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 2 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" } } }
layer { name: "step" type: "Threshold" bottom: "ip" top: "on" PROPAGATE }
layer { name: "loss" type: "EuclideanLoss" bottom: "on" bottom: "y" top: "loss" }
"""


def test_in_a_net_the_loss_may_not_learn_through_it():
    def make(text):
        return Net(text_format.Parse(text, caffe_pb2.NetParameter()), TRAIN)

    net = make(NET.replace("PROPAGATE", ""))
    net.blobs["x"].data[...] = 1.0
    net.forward_loss()
    with pytest.raises(MinicaffeError, match=r"Threshold layer 'step' has no backward"):
        net.backward_all()
    # Cutting the gradient path, as Caffe users do, leaves a net that runs both ways.
    net = make(NET.replace("PROPAGATE", "propagate_down: false"))
    net.blobs["x"].data[...] = 1.0
    net.forward_backward()
    assert not net.layers[net.layer_names.index("ip")].blobs[0].cpu_diff().any()


def test_bad_blob_count():
    with pytest.raises(MinicaffeError, match=r"Threshold layer 'step' takes exactly 1 bottom"):
        threshold(name="step").setup([], [Blob()])
