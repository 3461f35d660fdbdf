"""NetSpec: nets written as Python calls become NetParameters that build and run, with
pycaffe's keyword routing, generated names and error messages."""
import math

import numpy as np
import pytest
from google.protobuf import text_format

import minicaffe
import minicaffe.layers
from minicaffe import TEST, Net
from minicaffe.common import MinicaffeError
from minicaffe.net_spec import NetSpec, Function, Top, layers as L, params as P, param_name_dict, to_proto
from minicaffe.proto import caffe_pb2


def lenet(n, batch=4):
    """LeNet on zero-filled DummyData; `n` is a NetSpec, or None for an anonymous graph."""
    named = n is not None
    n = n if named else type("Anon", (), {})()  # a plain object: attributes are just variables
    n.data, n.label = L.DummyData(shape=[dict(dim=[batch, 1, 28, 28]), dict(dim=[batch, 1, 1, 1])],
                                  ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20, weight_filler=dict(type="xavier"))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.conv2 = L.Convolution(n.pool1, kernel_size=5, num_output=50, weight_filler=dict(type="xavier"))
    n.pool2 = L.Pooling(n.conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.ip1 = L.InnerProduct(n.pool2, num_output=500, weight_filler=dict(type="xavier"))
    n.relu1 = L.ReLU(n.ip1, in_place=True)
    n.ip2 = L.InnerProduct(n.relu1, num_output=10, weight_filler=dict(type="xavier"))
    n.loss = L.SoftmaxWithLoss(n.ip2, n.label)
    return n.to_proto() if named else n.loss.to_proto()


# ---------------------------------------------------------------- LeNet, named and anonymous
def test_named_lenet_builds_with_lenets_shapes_and_runs():
    proto = lenet(NetSpec())
    assert [l.name for l in proto.layer] == ["data", "conv1", "pool1", "conv2", "pool2", "ip1", "relu1",
                                            "ip2", "loss"]
    assert list(proto.layer[0].top) == ["data", "label"]
    relu = proto.layer[6]
    assert relu.type == "ReLU" and list(relu.bottom) == list(relu.top) == ["ip1"]

    net = Net(proto, TEST)
    assert len(net.layers) == 9
    # 28 -conv5-> 24 -pool2-> 12 -conv5-> 8 -pool2-> 4
    shapes = {name: net.blobs[name].data.shape for name in ("conv1", "pool1", "conv2", "pool2", "ip1", "ip2")}
    assert shapes == {"conv1": (4, 20, 24, 24), "pool1": (4, 20, 12, 12), "conv2": (4, 50, 8, 8),
                      "pool2": (4, 50, 4, 4), "ip1": (4, 500), "ip2": (4, 10)}
    # Zero inputs and zero biases: every score is 0, so the softmax loss is ln(10).
    assert net.forward()["loss"] == pytest.approx(math.log(10), rel=1e-5)


def test_anonymous_lenet_gets_type_numbered_names():
    proto = lenet(None)
    names = [(l.name, list(l.bottom), list(l.top)) for l in proto.layer]
    assert names == [
        ("DummyData1", [], ["DummyData1", "DummyData2"]),
        ("Convolution1", ["DummyData1"], ["Convolution1"]),
        ("Pooling1", ["Convolution1"], ["Pooling1"]),
        ("Convolution2", ["Pooling1"], ["Convolution2"]),
        ("Pooling2", ["Convolution2"], ["Pooling2"]),
        ("InnerProduct1", ["Pooling2"], ["InnerProduct1"]),
        ("ReLU1", ["InnerProduct1"], ["InnerProduct1"]),  # in place: writes its bottom
        ("InnerProduct2", ["InnerProduct1"], ["InnerProduct2"]),
        ("SoftmaxWithLoss1", ["InnerProduct2", "DummyData2"], ["SoftmaxWithLoss1"]),
    ]
    assert len(Net(proto, TEST).layers) == 9


def test_generated_names_are_stable_and_unique():
    a = L.Input(shape=dict(dim=[1, 2]))
    b, c = L.Slice(a, ntop=2)
    d = L.Eltwise(L.ReLU(b), L.ReLU(c))
    first, second = to_proto(d), to_proto(d)
    assert first == second  # counters start afresh on every call
    tops = [t for layer in first.layer for t in layer.top]
    assert len(tops) == len(set(tops))
    assert len({l.name for l in first.layer}) == len(first.layer)
    assert tops == ["Input1", "Slice1", "Slice2", "ReLU1", "ReLU2", "Eltwise1"]


def test_prototxt_round_trips_through_text_format_and_builds(tmp_path):
    proto = lenet(NetSpec())
    text = text_format.MessageToString(proto)
    assert text_format.Parse(text, caffe_pb2.NetParameter()) == proto
    path = tmp_path / "lenet.prototxt"
    path.write_text(str(proto))  # str() of a message is its text format, as pycaffe users write it
    assert Net(str(path), TEST).blobs["pool2"].data.shape == (4, 50, 4, 4)


def test_shared_ancestors_are_written_once_in_dependency_order():
    n = NetSpec()
    n.x = L.Input(shape=dict(dim=[2, 3]))
    n.a = L.ReLU(n.x)
    n.b = L.Sigmoid(n.x)
    n.s = L.Eltwise(n.a, n.b)
    unused = L.TanH(n.x)  # not reachable from an assigned top: not written
    proto = n.to_proto()
    assert [l.name for l in proto.layer] == ["x", "a", "b", "s"]
    assert "TanH" not in {l.type for l in proto.layer} and unused.fn.type_name == "TanH"
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
    out = Net(proto, TEST).forward(x=x)["s"]
    np.testing.assert_allclose(out, np.maximum(x, 0) + 1 / (1 + np.exp(-x)), rtol=1e-6)


def test_a_net_deeper_than_the_recursion_limit():
    top = L.Input(shape=dict(dim=[1]))
    for _ in range(3000):
        top = L.Power(top, shift=1)
    proto = to_proto(top)
    assert len(proto.layer) == 3001 and proto.layer[-1].top[0] == "Power3000"


# ---------------------------------------------------------------- layers without tops
def test_zero_top_layers():
    n = NetSpec()
    n.data, n.data2 = L.DummyData(shape=dict(dim=3), ntop=2)
    silence = L.Silence(n.data, ntop=0)
    assert isinstance(silence, Function) and silence.tops == ()
    n.silence_data = silence
    n.silence_data2 = L.Silence(n.data2, ntop=0)
    proto = n.to_proto()
    assert [(l.name, list(l.bottom), list(l.top)) for l in proto.layer[1:]] == [
        ("silence_data", ["data"], []), ("silence_data2", ["data2"], [])]
    net = Net(proto, TEST)
    assert net.forward() == {}


def test_anonymous_zero_top_layers_are_numbered_from_their_types_counter():
    x, y = L.DummyData(shape=dict(dim=3), ntop=2)
    proto = to_proto(L.Silence(x, ntop=0), L.Silence(y, ntop=0))
    assert [l.name for l in proto.layer] == ["DummyData1", "Silence1", "Silence2"]


def test_a_non_top_input_is_a_type_error_with_pycaffes_message():
    pair = L.DummyData(ntop=2)
    with pytest.raises(TypeError) as caught:
        L.Silence(pair, ntop=0)
    assert str(caught.value) == "Silence input 0 is not a Top (type is <class 'tuple'>)"
    assert isinstance(caught.value, MinicaffeError)
    L.Silence(*pair, ntop=0)  # each element is a Top


def test_netspec_rejects_a_tuple_and_misses_clearly():
    n = NetSpec()
    with pytest.raises(TypeError, match="unpack several tops"):
        n.data = L.DummyData(shape=dict(dim=3), ntop=2)
    n["odd name"] = L.Input(shape=dict(dim=[1]))
    assert isinstance(n["odd name"], Top) and n.to_proto().layer[0].top[0] == "odd name"
    with pytest.raises(AttributeError, match="no top 'conv9'"):
        n.conv9
    assert not hasattr(n, "__deepcopy__")


# ---------------------------------------------------------------- where keywords go
def one_layer(type_name, **kwargs):
    return to_proto(getattr(L, type_name)(L.Input(shape=dict(dim=[1, 1, 8, 8])), **kwargs)).layer[1]


def test_keywords_fill_the_layers_own_message_or_layerparameter():
    layer = one_layer("Convolution", num_output=4, kernel_size=3, pad=[1, 0],
                      weight_filler=dict(type="gaussian", std=0.1),
                      param=[dict(lr_mult=1), dict(lr_mult=2, decay_mult=0)],
                      include=dict(phase=TEST), loss_weight=0.5, propagate_down=[False])
    expected = text_format.Parse("""
        name: "Convolution1" type: "Convolution" bottom: "Input1" top: "Convolution1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 pad: 0
                            weight_filler { type: "gaussian" std: 0.1 } }
        param { lr_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        include { phase: TEST } loss_weight: 0.5 propagate_down: false""", caffe_pb2.LayerParameter())
    assert layer == expected


def test_explicit_param_messages_and_enum_constants():
    layer = one_layer("Pooling", pooling_param=dict(pool=P.Pooling.AVE, kernel_size=2), stride=2)
    assert layer.pooling_param.pool == caffe_pb2.PoolingParameter.AVE
    assert (layer.pooling_param.kernel_size, layer.pooling_param.stride) == (2, 2)


def test_deconvolution_keywords_go_to_convolution_param_and_build():
    top = L.Deconvolution(L.Input(shape=dict(dim=[1, 2, 5, 5])), num_output=3, kernel_size=4, stride=2,
                          bias_term=False)
    proto = to_proto(top)
    assert proto.layer[1].convolution_param.kernel_size == [4]
    # Caffe's deconvolution size: (5 - 1) * 2 + 4 = 12
    assert Net(proto, TEST).blobs["Deconvolution1"].data.shape == (1, 3, 12, 12)


def test_loss_keywords_go_to_loss_param():
    layer = one_layer("SigmoidCrossEntropyLoss", normalization=P.Loss.BATCH_SIZE)
    assert layer.loss_param.normalization == caffe_pb2.LossParameter.BATCH_SIZE


# ---------------------------------------------------------------- params, param_name_dict
def test_params_are_caffe_protos_enum_values():
    # The numbers written in caffe.proto.
    assert (P.Pooling.MAX, P.Pooling.AVE, P.Pooling.STOCHASTIC) == (0, 1, 2)
    assert (P.Eltwise.PROD, P.Eltwise.SUM, P.Eltwise.MAX) == (0, 1, 2)
    assert P.Loss.VALID == caffe_pb2.LossParameter.VALID == 1
    assert P.Convolution.CAFFE == caffe_pb2.ConvolutionParameter.CAFFE


def test_unknown_params_name_what_exists():
    with pytest.raises(AttributeError, match=r"STOCHASTIC.*Did you mean 'MAX'"):
        P.Pooling.MAXX
    with pytest.raises(AttributeError, match=r"no PoolinParameter.*Did you mean 'Pooling'"):
        P.Poolin


def test_param_name_dict_follows_caffe_proto():
    names = param_name_dict()
    assert names["Convolution"] == "convolution" and names["InnerProduct"] == "inner_product"
    assert names["Transformation"] == "transform" and names["HDF5Data"] == "hdf5_data"
    fields = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    for type_name, prefix in names.items():
        assert fields[prefix + "_param"].message_type.name == type_name + "Parameter"


# ---------------------------------------------------------------- clear errors
def test_a_misspelt_keyword_names_the_layer_and_the_field():
    x = L.Input(shape=dict(dim=[1, 1, 4, 4]))
    n = NetSpec()
    n.conv = L.Convolution(x, num_output=1, kernel_sise=3)
    with pytest.raises(AttributeError) as caught:
        n.to_proto()
    message = str(caught.value)
    assert isinstance(caught.value, MinicaffeError)
    assert "Convolution layer 'conv'" in message and "'kernel_sise'" in message
    assert "Did you mean 'kernel_size'" in message


def test_a_misspelt_nested_field_names_its_path():
    bad = L.Convolution(L.Input(shape=dict(dim=[1])), weight_filler=dict(typ="xavier"))
    with pytest.raises(AttributeError, match=r"convolution_param\.weight_filler\.typ: FillerParameter "
                                             r"has no field 'typ'\. Did you mean 'type'"):
        bad.to_proto()


@pytest.mark.parametrize("kwargs, words", [
    (dict(num_output="ten"), "convolution_param.num_output"),
    (dict(num_output=-1), "convolution_param.num_output"),
    (dict(weight_filler="xavier"), "holds a FillerParameter message, so give it as a dict"),
    (dict(bias_term=[True, False]), "holds a single value"),
])
def test_a_value_that_does_not_fit_its_field(kwargs, words):
    bad = L.Convolution(L.Input(shape=dict(dim=[1])), **kwargs)
    with pytest.raises(MinicaffeError) as caught:
        bad.to_proto()
    assert isinstance(caught.value, (TypeError, ValueError)) and words in str(caught.value)


def test_a_misspelt_layer_type():
    with pytest.raises(AttributeError, match=r"Convolutoin has no parameter message.*misspelt.*"
                                             r"Did you mean 'Convolution'"):
        L.Convolutoin(L.Input(shape=dict(dim=[1])), kernel_size=3).to_proto()
    # Without keywords to betray it, the misspelling reaches the net, which names it.
    proto = L.Convolutoin(L.Input(shape=dict(dim=[1]))).to_proto()
    with pytest.raises(MinicaffeError, match=r"unknown layer type 'Convolutoin'.*'Convolution'"):
        Net(proto, TEST)


def test_ntop_must_be_a_count():
    with pytest.raises(TypeError, match="ntop must be a count"):
        L.Slice(L.Input(shape=dict(dim=[1])), ntop=-1)


# ---------------------------------------------------------------- minicaffe.layers doubles as L
def test_the_layers_package_is_also_the_layer_factory():
    top = minicaffe.layers.Convolution(L.Input(shape=dict(dim=[1])), num_output=1)
    assert isinstance(top, Top) and top.fn.type_name == "Convolution"
    from minicaffe.layers import Pooling
    assert Pooling(top).fn.type_name == "Pooling"
    assert minicaffe.layers.convolution.__name__ == "minicaffe.layers.convolution"  # still the module
    with pytest.raises(AttributeError, match="has no attribute 'no_such_module'"):
        minicaffe.layers.no_such_module
