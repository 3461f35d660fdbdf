"""Files from older Caffes: V0 and V1 nets, old input fields, data and BatchNorm options,
V1 .caffemodels with legacy blob shapes, the solver_type enum, and the upgrade verbs.

The expected results are written out by hand in today's format, from the rules of
Caffe's upgrade_proto.cpp and the cases of its test_upgrade_proto.cpp (new nets, same
facts). The acceptance test at the end writes the weights of every model-zoo deploy net
in the V1 format with its own small writer (`write_v1_weights`), which shares nothing
with minicaffe.upgrade, and checks that they load to the same forward outputs as the
same weights written in today's format.
"""
import numpy as np
import pytest
from google.protobuf import text_format

from minicaffe import cli, common, layer_type_list, protoio
from minicaffe.common import MinicaffeError
from minicaffe.net import TEST, Net
from minicaffe.proto import caffe_pb2
from minicaffe.testing import zoo
from minicaffe.upgrade import (legacy_blob_shape, net_needs_upgrade, proto_shape_matches,
                               upgrade_net_as_needed, upgrade_v0_net, upgrade_v0_padding_layers,
                               v1_layer_type)
from tests.test_model_zoo import DEPLOY_NETS, draw_weights
from tests.zoo import CAFFE_MODELS, require_caffe_models

V1 = caffe_pb2.V1LayerParameter


def parse(text, message=None):
    return text_format.Parse(text, message or caffe_pb2.NetParameter())


def assert_same(actual, expected_text):
    """`actual` equals the message written in `expected_text` (compared as text: a readable diff)."""
    expected = parse(expected_text, type(actual)())
    assert text_format.MessageToString(actual) == text_format.MessageToString(expected)


def upgraded(text, source="test.prototxt"):
    param = parse(text)
    assert net_needs_upgrade(param)
    assert upgrade_net_as_needed(param, source)
    assert not net_needs_upgrade(param)  # once is enough
    return param


# ---------------------------------------------------------------- V0 -> V1 -> V2

# A 2013 net: flat V0 layers, a padding layer, net-level input_dim.
V0_NET = """
name: "tiny_v0"
input: "pixels"
input_dim: 2 input_dim: 1 input_dim: 8 input_dim: 8
layers { layer { name: "pad" type: "padding" pad: 1 } bottom: "pixels" top: "padded" }
layers {
  layer { name: "conv" type: "conv" num_output: 4 kernelsize: 3 stride: 2
          weight_filler { type: "gaussian" std: 0.1 } bias_filler { type: "constant" value: 0.5 }
          blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0 }
  bottom: "padded" top: "conv" }
layers { layer { name: "relu" type: "relu" } bottom: "conv" top: "conv" }
layers { layer { name: "pool" type: "pool" pool: AVE kernelsize: 2 stride: 2 } bottom: "conv" top: "pool" }
layers { layer { name: "ip" type: "innerproduct" num_output: 3 biasterm: false
                 weight_filler { type: "xavier" } } bottom: "pool" top: "ip" }
layers { layer { name: "prob" type: "softmax" } bottom: "ip" top: "prob" }
"""

# The padding is gone: the convolution pads itself and reads the input directly.
V0_NET_AS_V1 = """
name: "tiny_v0"
input: "pixels"
input_dim: 2 input_dim: 1 input_dim: 8 input_dim: 8
layers { name: "conv" type: CONVOLUTION bottom: "pixels" top: "conv"
         blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
         convolution_param { num_output: 4 pad: 1 kernel_size: 3 stride: 2
                             weight_filler { type: "gaussian" std: 0.1 }
                             bias_filler { type: "constant" value: 0.5 } } }
layers { name: "relu" type: RELU bottom: "conv" top: "conv" }
layers { name: "pool" type: POOLING bottom: "conv" top: "pool"
         pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layers { name: "ip" type: INNER_PRODUCT bottom: "pool" top: "ip"
         inner_product_param { num_output: 3 bias_term: false weight_filler { type: "xavier" } } }
layers { name: "prob" type: SOFTMAX bottom: "ip" top: "prob" }
"""

V0_NET_AS_V2 = """
name: "tiny_v0"
layer { name: "input" type: "Input" top: "pixels" input_param { shape { dim: 2 dim: 1 dim: 8 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "pixels" top: "conv"
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        convolution_param { num_output: 4 pad: 1 kernel_size: 3 stride: 2
                            weight_filler { type: "gaussian" std: 0.1 }
                            bias_filler { type: "constant" value: 0.5 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
        pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "pool" top: "ip"
        inner_product_param { num_output: 3 bias_term: false weight_filler { type: "xavier" } } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""


def test_a_v0_net_upgrades_to_v1_then_to_today(caplog):
    v1 = parse(V0_NET)
    assert upgrade_v0_net(v1)
    assert_same(v1, V0_NET_AS_V1)
    with caplog.at_level("INFO", logger="minicaffe.upgrade"):
        assert_same(upgraded(V0_NET, "old/tiny.prototxt"), V0_NET_AS_V2)
    assert ("Attempting to upgrade input file specified using deprecated V0LayerParameter: "
            "old/tiny.prototxt") in caplog.text
    assert "deprecated V1LayerParameter: old/tiny.prototxt" in caplog.text
    assert "deprecated input fields: old/tiny.prototxt" in caplog.text


def test_a_v0_net_builds_and_runs(tmp_path):
    path = tmp_path / "v0.prototxt"
    path.write_text(V0_NET)
    net = Net(str(path), TEST)
    assert [layer.type for layer in net.layers] == ["Input", "Convolution", "ReLU", "Pooling",
                                                    "InnerProduct", "Softmax"]
    # 8x8 padded by 1, 3x3 kernel, stride 2: 4x4; pooled 2 by 2: 2x2; 3 classes.
    assert net.blobs["conv"].shape == (2, 4, 4, 4) and net.blobs["pool"].shape == (2, 4, 2, 2)
    net.blobs["pixels"].data[...] = np.random.default_rng(0).uniform(-1, 1, (2, 1, 8, 8))
    prob = net.forward()["prob"]
    np.testing.assert_allclose(prob.sum(axis=1), 1, rtol=1e-6)
    assert len(net.params["ip"]) == 1  # biasterm: false


def test_padding_folds_once_and_only_into_conv_or_pool():
    once = upgrade_v0_padding_layers(parse(V0_NET))
    assert [c.layer.name for c in once.layers] == ["conv", "relu", "pool", "ip", "prob"]
    assert once.layers[0].layer.pad == 1 and list(once.layers[0].bottom) == ["pixels"]
    assert upgrade_v0_padding_layers(once) == once  # nothing left to fold
    # Padding in front of a ReLU cannot be taken over: an error naming both layers.
    bad = V0_NET.replace('bottom: "conv" top: "conv" }\nlayers { layer { name: "pool"',
                         'bottom: "padded" top: "conv" }\nlayers { layer { name: "pool"')
    with pytest.raises(MinicaffeError, match=r"my.prototxt: .*padding layer 'pad' feeds layer "
                                             r"'relu', of type 'relu'; only a conv or pool"):
        upgrade_net_as_needed(parse(bad), "my.prototxt")
    unknown = V0_NET.replace('bottom: "pool" top: "ip"', 'bottom: "poll" top: "ip"')
    with pytest.raises(MinicaffeError, match=r"layer 'ip': unknown bottom blob 'poll'"):
        upgrade_net_as_needed(parse(unknown), "my.prototxt")


# Every V0 option the examples above leave out, each to its V1 home.
V0_OPTIONS = """
layers { layer { name: "d" type: "data" source: "train_lmdb" meanfile: "mean.binaryproto"
                 batchsize: 32 cropsize: 24 mirror: true scale: 0.5 rand_skip: 10 }
         top: "d" top: "label" }
layers { layer { name: "img" type: "images" source: "list.txt" batchsize: 4 rand_skip: 3
                 shuffle_images: true new_height: 20 new_width: 30 }
         top: "img" top: "img_label" }
layers { layer { name: "win" type: "window_data" source: "windows.txt" batchsize: 8
                 det_fg_threshold: 0.6 det_bg_threshold: 0.4 det_fg_fraction: 0.3
                 det_context_pad: 8 det_crop_mode: "square" }
         top: "win" top: "win_label" }
layers { layer { name: "h5" type: "hdf5_data" source: "h5.txt" batchsize: 16 } top: "h5" }
layers { layer { name: "grouped" type: "conv" num_output: 6 group: 2 kernelsize: 5 pad: 2 }
         bottom: "d" top: "grouped" }
layers { layer { name: "stoch" type: "pool" pool: STOCHASTIC kernelsize: 3 stride: 3 pad: 1 }
         bottom: "grouped" top: "stoch" }
layers { layer { name: "norm" type: "lrn" local_size: 3 alpha: 0.01 beta: 0.5 k: 2 }
         bottom: "stoch" top: "norm" }
layers { layer { name: "cat" type: "concat" concat_dim: 1 } bottom: "norm" bottom: "stoch" top: "cat" }
layers { layer { name: "drop" type: "dropout" dropout_ratio: 0.3 } bottom: "cat" top: "cat" }
layers { layer { name: "gain" type: "infogain_loss" source: "H.binaryproto" }
         bottom: "cat" bottom: "label" }
layers { layer { name: "out" type: "hdf5_output" hdf5_output_param { file_name: "out.h5" } }
         bottom: "d" bottom: "label" }
"""

V0_OPTIONS_AS_V1 = """
layers { name: "d" type: DATA top: "d" top: "label"
         data_param { source: "train_lmdb" batch_size: 32 rand_skip: 10 }
         transform_param { scale: 0.5 mirror: true crop_size: 24 mean_file: "mean.binaryproto" } }
layers { name: "img" type: IMAGE_DATA top: "img" top: "img_label"
         image_data_param { source: "list.txt" batch_size: 4 rand_skip: 3 shuffle: true
                            new_height: 20 new_width: 30 } }
layers { name: "win" type: WINDOW_DATA top: "win" top: "win_label"
         window_data_param { source: "windows.txt" batch_size: 8 fg_threshold: 0.6
                             bg_threshold: 0.4 fg_fraction: 0.3 context_pad: 8 crop_mode: "square" } }
layers { name: "h5" type: HDF5_DATA top: "h5" hdf5_data_param { source: "h5.txt" batch_size: 16 } }
layers { name: "grouped" type: CONVOLUTION bottom: "d" top: "grouped"
         convolution_param { num_output: 6 group: 2 kernel_size: 5 pad: 2 } }
layers { name: "stoch" type: POOLING bottom: "grouped" top: "stoch"
         pooling_param { pool: STOCHASTIC kernel_size: 3 stride: 3 pad: 1 } }
layers { name: "norm" type: LRN bottom: "stoch" top: "norm"
         lrn_param { local_size: 3 alpha: 0.01 beta: 0.5 k: 2 } }
layers { name: "cat" type: CONCAT bottom: "norm" bottom: "stoch" top: "cat" concat_param { concat_dim: 1 } }
layers { name: "drop" type: DROPOUT bottom: "cat" top: "cat" dropout_param { dropout_ratio: 0.3 } }
layers { name: "gain" type: INFOGAIN_LOSS bottom: "cat" bottom: "label"
         infogain_loss_param { source: "H.binaryproto" } }
layers { name: "out" type: HDF5_OUTPUT bottom: "d" bottom: "label"
         hdf5_output_param { file_name: "out.h5" } }
"""


def test_every_v0_option_goes_where_v1_keeps_it():
    param = parse(V0_OPTIONS)
    assert upgrade_v0_net(param)
    assert_same(param, V0_OPTIONS_AS_V1)


def test_a_v0_option_the_type_has_no_place_for_is_dropped_and_named(caplog):
    param = parse('layers { layer { name: "r" type: "relu" num_output: 5 } }')
    with caplog.at_level("INFO", logger="minicaffe.upgrade"):
        assert upgrade_net_as_needed(param, "old.prototxt") is False  # incomplete, but done
    assert_same(param, 'layer { name: "r" type: "ReLU" }')
    assert "Layer 'r' (V0 type 'relu'): its option num_output has no place" in caplog.text


@pytest.mark.parametrize("text, message", [
    ('layers { layer { name: "x" type: "fancy" } }', r"layer 'x': unknown V0 layer type 'fancy'"),
    ('layers { layer { name: "x" type: "relu" } } layers { name: "y" type: RELU }',
     r"layers entry #1 \(y\) is in the V1 format while others wrap a V0 `layer`"),
    ('layers { name: "x" type: RELU } layer { name: "y" type: "ReLU" }',
     r"it mixes 1 `layer` entries .* with 1 `layers` entries"),
])
def test_what_cannot_be_upgraded_is_an_error_naming_file_and_layer(text, message):
    with pytest.raises(MinicaffeError, match=r"^old.prototxt: cannot upgrade it .*" + message):
        upgrade_net_as_needed(parse(text), "old.prototxt")


# ---------------------------------------------------------------- V1 -> V2

def test_v1_learning_settings_become_one_param_spec_per_blob():
    v1 = """
    input: "x" input_shape { dim: 1 dim: 2 }
    layers { name: "a" type: INNER_PRODUCT bottom: "x" top: "a" include { phase: TRAIN }
             param: "shared_w" param: "shared_b" blob_share_mode: PERMISSIVE
             blobs_lr: 3 blobs_lr: 6 weight_decay: 0.5
             inner_product_param { num_output: 2 }
             blobs { num: 1 channels: 1 height: 2 width: 2 data: 1 data: 2 data: 3 data: 4 } }
    layers { name: "b" type: INNER_PRODUCT bottom: "x" top: "b" exclude { stage: "deploy" }
             param: "shared_w" inner_product_param { num_output: 2 bias_term: false } }
    layers { name: "loss" type: EUCLIDEAN_LOSS bottom: "a" bottom: "b" top: "loss" loss_weight: 2 }
    """
    assert_same(upgraded(v1), """
    layer { name: "input" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 } } }
    layer { name: "a" type: "InnerProduct" bottom: "x" top: "a" include { phase: TRAIN }
            param { name: "shared_w" share_mode: PERMISSIVE lr_mult: 3 decay_mult: 0.5 }
            param { name: "shared_b" lr_mult: 6 }
            inner_product_param { num_output: 2 }
            blobs { num: 1 channels: 1 height: 2 width: 2 data: 1 data: 2 data: 3 data: 4 } }
    layer { name: "b" type: "InnerProduct" bottom: "x" top: "b" exclude { stage: "deploy" }
            param { name: "shared_w" } inner_product_param { num_output: 2 bias_term: false } }
    layer { name: "loss" type: "EuclideanLoss" bottom: "a" bottom: "b" top: "loss" loss_weight: 2 }
    """)


def test_v1_data_layers_hand_their_transform_options_to_transform_param():
    v1 = """
    layers { name: "d" type: DATA top: "d"
             data_param { source: "db" batch_size: 2 scale: 0.25 mean_file: "m.binaryproto" }
             transform_param { scale: 9 crop_size: 3 } }
    layers { name: "i" type: IMAGE_DATA top: "i" image_data_param { source: "l.txt" mirror: true crop_size: 5 } }
    layers { name: "w" type: WINDOW_DATA top: "w" window_data_param { source: "w.txt" crop_size: 7 } }
    layers { name: "m" type: MEMORY_DATA top: "m" memory_data_param { batch_size: 1 channels: 1 height: 1 width: 1 } }
    """
    # The old options win over transform_param, as in Caffe; other layers are left alone.
    assert_same(upgraded(v1), """
    layer { name: "d" type: "Data" top: "d" data_param { source: "db" batch_size: 2 }
            transform_param { scale: 0.25 crop_size: 3 mean_file: "m.binaryproto" } }
    layer { name: "i" type: "ImageData" top: "i" image_data_param { source: "l.txt" }
            transform_param { mirror: true crop_size: 5 } }
    layer { name: "w" type: "WindowData" top: "w" window_data_param { source: "w.txt" }
            transform_param { crop_size: 7 } }
    layer { name: "m" type: "MemoryData" top: "m"
            memory_data_param { batch_size: 1 channels: 1 height: 1 width: 1 } }
    """)


def test_every_v1_type_names_a_minicaffe_layer():
    names = {V1.LayerType.Name(value): v1_layer_type(value) for value in V1.LayerType.values()}
    assert names.pop("NONE") == ""
    assert set(names.values()) <= set(layer_type_list())
    assert len(set(names.values())) == len(names) == 39
    # The names that are not a plain CamelCase of the enum.
    assert [names[n] for n in ("ABSVAL", "SOFTMAX_LOSS", "IM2COL", "TANH", "HDF5_DATA", "RELU")] == \
        ["AbsVal", "SoftmaxWithLoss", "Im2col", "TanH", "HDF5Data", "ReLU"]


V1_NET = """
name: "tiny_v1"
input: "x" input_dim: 2 input_dim: 3 input_dim: 6 input_dim: 6
layers { name: "conv" type: CONVOLUTION bottom: "x" top: "conv" blobs_lr: 1 blobs_lr: 2
         convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }
layers { name: "relu" type: RELU bottom: "conv" top: "conv" }
layers { name: "pool" type: POOLING bottom: "conv" top: "pool" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layers { name: "ip" type: INNER_PRODUCT bottom: "pool" top: "ip" inner_product_param { num_output: 5 } }
layers { name: "prob" type: SOFTMAX bottom: "ip" top: "prob" }
"""

V1_NET_TODAY = """
name: "tiny_v1"
layer { name: "input" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 dim: 6 dim: 6 } } }
layer { name: "conv" type: "Convolution" bottom: "x" top: "conv" param { lr_mult: 1 } param { lr_mult: 2 }
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "pool" top: "ip" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""


def test_a_v1_net_builds_and_computes_what_its_upgrade_does(tmp_path, caplog):
    assert_same(upgraded(V1_NET), V1_NET_TODAY)
    path = tmp_path / "v1.prototxt"
    path.write_text(V1_NET)
    with caplog.at_level("INFO", logger="minicaffe.upgrade"):
        old = Net(str(path), TEST)
    assert f"Attempting to upgrade input file specified using deprecated V1LayerParameter: {path}" in caplog.text
    today = Net(parse(V1_NET_TODAY), TEST)
    today.copy_from(old.to_proto())
    x = np.random.default_rng(1).uniform(-1, 1, (2, 3, 6, 6))
    np.testing.assert_array_equal(old.forward(x=x)["prob"], today.forward(x=x)["prob"])
    assert old.params_lr == today.params_lr == [1, 2, 1, 1]


# ---------------------------------------------------------------- input fields, BatchNorm

def test_input_fields_become_an_input_layer_first():
    two = upgraded('input: "a" input: "b" input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 4 '
                   'input_dim: 5 input_dim: 6 input_dim: 7 input_dim: 8 '
                   'layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "s" }')
    assert_same(two, 'layer { name: "input" type: "Input" top: "a" top: "b" input_param { '
                     'shape { dim: 1 dim: 2 dim: 3 dim: 4 } shape { dim: 5 dim: 6 dim: 7 dim: 8 } } } '
                     'layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "s" }')
    # input_shape wins over input_dim when both are there.
    shaped = upgraded('input: "a" input_shape { dim: 3 } input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1')
    assert_same(shaped, 'layer { name: "input" type: "Input" top: "a" input_param { shape { dim: 3 } } }')
    # A .caffemodel from an older Caffe names its inputs without shapes: they just go.
    assert_same(upgraded('input: "data" layer { name: "ip" }'), 'layer { name: "ip" }')


@pytest.mark.parametrize("text, message", [
    ('input: "a" input: "b" input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 4',
     r"input_dim needs 4 values per input \(2 input\(s\)\), got 4"),
    ('input: "a" input: "b" input_shape { dim: 1 }', r"2 input\(s\) \['a', 'b'\] but 1 input_shape"),
])
def test_input_fields_that_do_not_add_up_are_an_error(text, message, tmp_path):
    path = tmp_path / "in.prototxt"
    path.write_text(text)
    with pytest.raises(MinicaffeError, match=r"in.prototxt: cannot upgrade it .*" + message):
        Net(str(path), TEST)


BATCH_NORM_NET = """
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 4 dim: 3 } } }
layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y"
        param { lr_mult: 0 } param { lr_mult: 1 decay_mult: 1 } param { name: "w" lr_mult: 0 } }
layer { name: "bn1" type: "BatchNorm" bottom: "x" top: "z" param { lr_mult: 0 } }
"""


def test_batch_norm_with_the_three_old_param_specs_learns_nothing():
    param = upgraded(BATCH_NORM_NET)
    assert_same(param.layer[1], 'name: "bn" type: "BatchNorm" bottom: "x" top: "y" '
                                'param { lr_mult: 0 decay_mult: 0 } param { lr_mult: 0 decay_mult: 0 } '
                                'param { name: "w" lr_mult: 0 decay_mult: 0 }')
    assert param.layer[2] == parse(BATCH_NORM_NET).layer[2]  # one spec: not the old definition
    # Without the upgrade, the second spec's lr_mult 1 would be refused by the layer.
    net = Net(parse(BATCH_NORM_NET), TEST)
    assert net.params_lr == [0] * 6


# ---------------------------------------------------------------- weights

def legacy_blob(shape4, values) -> caffe_pb2.BlobProto:
    num, channels, height, width = shape4
    return caffe_pb2.BlobProto(num=num, channels=channels, height=height, width=width, data=values)


IP_NET = """
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 2 } }
"""


def test_a_v1_caffemodel_loads_with_its_legacy_blob_shapes(tmp_path, caplog):
    # As an older Caffe wrote it: V1 layers, net-level inputs without shapes, and a
    # weight of 2 x 3 stored as 1 x 1 x 2 x 3, a bias of 2 as 1 x 1 x 1 x 2.
    old = caffe_pb2.NetParameter(name="old", input=["x"])
    old.layers.add(name="ip", type=V1.INNER_PRODUCT, bottom=["x"], top=["y"],
                   blobs=[legacy_blob((1, 1, 2, 3), [1, 2, 3, 4, 5, 6]), legacy_blob((1, 1, 1, 2), [10, 20])])
    path = tmp_path / "old.caffemodel"
    path.write_bytes(old.SerializeToString())
    with caplog.at_level("INFO"):
        net = Net(parse(IP_NET), TEST, weights=str(path))
    assert f"deprecated V1LayerParameter: {path}" in caplog.text
    assert "copied for 1 of 1 learnable layers (ip)" in caplog.text
    np.testing.assert_array_equal(net.params["ip"][0].data, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(net.forward(x=[[1, 0, -1]])["y"], [[1 - 3 + 10, 4 - 6 + 20]])

    # Caffe's rule: legacy dims are today's shape with 1s in front, nothing else.
    old.layers[0].blobs[0].CopyFrom(legacy_blob((1, 1, 3, 2), [1, 2, 3, 4, 5, 6]))
    path.write_bytes(old.SerializeToString())
    with pytest.raises(MinicaffeError, match=r"old.caffemodel: cannot copy param 0 weights of layer 'ip'; "
                                             r"shape mismatch: the file has \(1, 1, 3, 2\), the net has \(2, 3\)"):
        Net(parse(IP_NET), TEST).copy_from(str(path))


def test_legacy_shapes_match_as_in_caffe():
    assert legacy_blob_shape((10,)) == (1, 1, 1, 10) and legacy_blob_shape((2, 3, 4, 5)) == (2, 3, 4, 5)
    assert legacy_blob_shape((1, 2, 3, 4, 5)) is None  # four fields cannot hold five axes
    assert proto_shape_matches(legacy_blob((1, 1, 1, 10), []), (10,))
    assert proto_shape_matches(legacy_blob((1, 1, 1, 10), []), (1, 10))
    assert not proto_shape_matches(legacy_blob((1, 1, 10, 1), []), (10,))
    # Today's `shape` field is compared as it is: 1 x 10 is not 10.
    assert not proto_shape_matches(caffe_pb2.BlobProto(shape=caffe_pb2.BlobShape(dim=[1, 10])), (10,))


def test_a_v0_caffemodel_keeps_the_weights_inside_its_v0_layers():
    old = parse('input: "x" layers { layer { name: "ip" type: "innerproduct" num_output: 2 } '
                'bottom: "x" top: "y" }')
    old.layers[0].layer.blobs.extend([legacy_blob((1, 1, 2, 3), [6, 5, 4, 3, 2, 1]),
                                      legacy_blob((1, 1, 1, 2), [-1, 1])])
    net = Net(parse(IP_NET), TEST, weights=old)
    np.testing.assert_array_equal(net.params["ip"][0].data, [[6, 5, 4], [3, 2, 1]])
    np.testing.assert_array_equal(net.params["ip"][1].data, [-1, 1])
    assert old.layers[0].HasField("layer")  # the caller's message is left as it was


# ---------------------------------------------------------------- the upgrade verbs

def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def assert_clear_error(code, err, *fragments):
    assert code == 1 and "Traceback" not in err
    message = err[err.index("minicaffe: error: "):]
    for fragment in fragments:
        assert fragment in message


def test_upgrade_net_proto_text_writes_todays_format(tmp_path, capsys):
    (tmp_path / "old.prototxt").write_text(V0_NET)
    code, err = run(capsys, "upgrade_net_proto_text", tmp_path / "old.prototxt", tmp_path / "new.prototxt")
    assert code == 0 and f"Wrote upgraded NetParameter text proto to {tmp_path / 'new.prototxt'}" in err
    new = protoio.read_net_param(tmp_path / "new.prototxt")
    assert_same(new, V0_NET_AS_V2)
    # Once more: nothing to do, said so, and the file is the same.
    code, err = run(capsys, "upgrade_net_proto_text", tmp_path / "new.prototxt", tmp_path / "new.prototxt")
    assert code == 0 and "File already in latest proto format" in err
    assert protoio.read_net_param(tmp_path / "new.prototxt") == new


def test_upgrade_net_proto_binary_keeps_the_weights(tmp_path, capsys):
    old = parse('input: "x" layers { name: "ip" type: INNER_PRODUCT bottom: "x" top: "y" '
                'inner_product_param { num_output: 2 } }')
    old.layers[0].blobs.extend([legacy_blob((1, 1, 2, 3), [1, 2, 3, 4, 5, 6]), legacy_blob((1, 1, 1, 2), [7, 8])])
    (tmp_path / "old.caffemodel").write_bytes(old.SerializeToString())
    code, _ = run(capsys, "upgrade_net_proto_binary", tmp_path / "old.caffemodel", tmp_path / "new.caffemodel")
    assert code == 0
    new = protoio.read_binary(tmp_path / "new.caffemodel", caffe_pb2.NetParameter())
    assert not new.layers and not new.input and [layer.type for layer in new.layer] == ["InnerProduct"]
    assert list(new.layer[0].blobs[1].data) == [7, 8]
    net = Net(parse(IP_NET), TEST, weights=str(tmp_path / "new.caffemodel"))
    np.testing.assert_array_equal(net.params["ip"][0].data, [[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize("old, new", [("SGD", "SGD"), ("NESTEROV", "Nesterov"), ("ADAGRAD", "AdaGrad"),
                                      ("RMSPROP", "RMSProp"), ("ADADELTA", "AdaDelta"), ("ADAM", "Adam")])
def test_upgrade_solver_proto_text_names_the_solver_type(old, new, tmp_path, capsys):
    rest = 'net: "train.prototxt" base_lr: 0.01 lr_policy: "fixed" max_iter: 10 solver_mode: CPU '
    (tmp_path / "old.prototxt").write_text(rest + f"solver_type: {old}")
    code, _ = run(capsys, "upgrade_solver_proto_text", tmp_path / "old.prototxt", tmp_path / "new.prototxt")
    assert code == 0
    assert_same(protoio.read_solver_param(tmp_path / "new.prototxt"), rest + f'type: "{new}"')


def test_upgrade_verbs_fail_clearly(tmp_path, capsys):
    (tmp_path / "broken.prototxt").write_text('layers { name: "x"\n  type: RELU }\n}\n')
    (tmp_path / "fancy.prototxt").write_text('layers { layer { name: "x" type: "fancy" } }')
    (tmp_path / "both.prototxt").write_text("solver_type: ADAM type: \"Adam\"")
    (tmp_path / "v0.prototxt").write_text('layers { layer { name: "r" type: "relu" group: 2 } }')
    out = tmp_path / "out.prototxt"
    assert_clear_error(*run(capsys, "upgrade_net_proto_text", tmp_path / "missing.prototxt", out),
                       "missing.prototxt: no such file")
    assert_clear_error(*run(capsys, "upgrade_net_proto_text", tmp_path / "broken.prototxt", out),
                       "broken.prototxt:3:1:")
    assert_clear_error(*run(capsys, "upgrade_net_proto_binary", tmp_path / "broken.prototxt", out),
                       "broken.prototxt: not a valid NetParameter")
    assert_clear_error(*run(capsys, "upgrade_net_proto_text", tmp_path / "fancy.prototxt", out),
                       "fancy.prototxt: cannot upgrade it", "layer 'x': unknown V0 layer type 'fancy'")
    assert_clear_error(*run(capsys, "upgrade_solver_proto_text", tmp_path / "both.prototxt", out),
                       "both.prototxt: give the solver's type once")
    assert not out.exists()
    # An incomplete upgrade writes what it could, and fails so that a script notices.
    code, err = run(capsys, "upgrade_net_proto_text", tmp_path / "v0.prototxt", out)
    assert_clear_error(code, err, "v0.prototxt: the upgrade was incomplete", f"{out} was written")
    assert "its option group has no place" in err
    assert_same(protoio.read_net_param(out), 'layer { name: "r" type: "ReLU" }')
    (tmp_path / "new.prototxt").write_text(V1_NET_TODAY)
    assert_clear_error(*run(capsys, "upgrade_net_proto_text", tmp_path / "new.prototxt",
                            tmp_path / "nowhere" / "out.prototxt"), "the directory", "does not exist")


# ---------------------------------------------------------------- acceptance: the model zoo in V1

# The types of the zoo's deploy nets that V1 had, by their V1 enum, written out here
# rather than taken from minicaffe.upgrade, so that a wrong entry there cannot cancel out.
V1_TYPES = {"Convolution": V1.CONVOLUTION, "Deconvolution": V1.DECONVOLUTION, "ReLU": V1.RELU,
            "Pooling": V1.POOLING, "LRN": V1.LRN, "InnerProduct": V1.INNER_PRODUCT,
            "Dropout": V1.DROPOUT, "Softmax": V1.SOFTMAX, "Concat": V1.CONCAT,
            "Eltwise": V1.ELTWISE, "Split": V1.SPLIT, "Flatten": V1.FLATTEN, "Sigmoid": V1.SIGMOID}


def packed_floats(values) -> bytes:
    """BlobProto's `data` (field 5, packed float32) as it is on the wire: the key (5 << 3 |
    2, a length-delimited field), the byte count as a varint, then the float32s in little
    endian. Merged into a BlobProto, this stores 60M floats in a blink."""
    raw = np.ascontiguousarray(values, dtype="<f4").tobytes()
    n, length = len(raw), bytearray()
    while True:
        length.append((n & 0x7F) | (0x80 if n >> 7 else 0))
        n >>= 7
        if not n:
            return bytes([5 << 3 | 2]) + bytes(length) + raw


def write_v1_weights(net, path) -> None:
    """Write `net` with its weights as a Caffe of 2014 would have: V1 `layers` entries with
    enum types, inputs named at net level without shapes, and every blob's shape in the
    legacy num/channels/height/width fields, padded with 1s in front (a bias of n values
    is 1 x 1 x 1 x n). Layer types V1 never had (BatchNorm, Scale) get no type: a
    .caffemodel's weights are matched by layer name only."""
    out = caffe_pb2.NetParameter(name=net.name)
    for layer in net.layers:
        lp = layer.layer_param
        if lp.type == "Input":
            out.input.extend(lp.top)
            continue
        v1 = out.layers.add(name=lp.name, bottom=lp.bottom, top=lp.top)
        if lp.type in V1_TYPES:
            v1.type = V1_TYPES[lp.type]
        for field in ("convolution_param", "pooling_param", "inner_product_param", "lrn_param",
                      "concat_param", "dropout_param", "eltwise_param"):
            if lp.HasField(field):
                getattr(v1, field).CopyFrom(getattr(lp, field))
        for blob in layer.blobs:
            assert blob.num_axes <= 4, f"{lp.name}: the legacy fields hold at most four axes"
            num, channels, height, width = [1] * (4 - blob.num_axes) + list(blob.shape)
            proto = v1.blobs.add(num=num, channels=channels, height=height, width=width)
            proto.MergeFromString(packed_floats(blob.data))
    path.write_bytes(out.SerializeToString())


# 6 to 13 s each on two cores (45M to 60M weights, written twice and read twice);
# CaffeNet (11 s), GoogLeNet, ResNet-50 and the SqueezeNets stay in the default run.
SLOW_NETS = {"examples/net_surgery/bvlc_caffenet_full_conv.prototxt",
             "models/bvlc_alexnet/deploy.prototxt",
             "models/bvlc_reference_rcnn_ilsvrc13/deploy.prototxt",
             "models/finetune_flickr_style/deploy.prototxt",
             "models/resnet/ResNet-101-deploy.prototxt",
             "models/resnet/ResNet-152-deploy.prototxt"}


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if p in SLOW_NETS else p
                                  for p in DEPLOY_NETS])
def test_zoo_weights_in_the_v1_format_load_to_the_same_outputs(path, tmp_path):
    require_caffe_models()
    param = zoo.at_batch_one(CAFFE_MODELS / path)
    with common.using_mode(common.CPU):
        drawn = Net(param, TEST)
        draw_weights(drawn, np.random.default_rng(12))
        drawn.save(tmp_path / "today.caffemodel")
        write_v1_weights(drawn, tmp_path / "v1.caffemodel")
        written = protoio.read_binary(tmp_path / "v1.caffemodel", caffe_pb2.NetParameter())
        assert written.layers and not written.layer  # really the old format
        del written
        inputs = {name: np.random.default_rng(5).uniform(-1, 1, drawn.blobs[name].shape)
                  for name in drawn.inputs}
        outputs = {}
        for kind in ("today", "v1"):
            net = Net(param, TEST, weights=str(tmp_path / f"{kind}.caffemodel"))
            for name, blobs in drawn.params.items():
                for i, blob in enumerate(blobs):
                    assert np.array_equal(net.params[name][i].data, blob.data), f"{kind}: {name}[{i}]"
            outputs[kind] = {name: value.copy() for name, value in net.forward(**inputs).items()}
            del net
    assert outputs["today"].keys() == outputs["v1"].keys() and outputs["today"]
    for name, value in outputs["today"].items():
        assert np.all(np.isfinite(value)), name
        np.testing.assert_array_equal(outputs["v1"][name], value, err_msg=f"{path}: output {name!r}")
