"""Net construction and running: Caffe's filtering, splits, in-place tops, sharing,
backward analysis, loss weights, weight I/O and clear errors."""
import numpy as np
import pytest
from google.protobuf import text_format

from minicaffe import Net, TEST, TRAIN
from minicaffe.common import MinicaffeError, set_random_seed
from minicaffe.layer import create_layer
from minicaffe.net import filter_net, insert_splits, state_meets_rule
from minicaffe.proto import caffe_pb2


def net_param(text: str) -> caffe_pb2.NetParameter:
    return text_format.Parse(text, caffe_pb2.NetParameter())


def make_net(text: str, phase=TRAIN, **kwargs) -> Net:
    set_random_seed(3)
    return Net(net_param(text), phase, **kwargs)


# Two inner products reading the same input (a split), then a Euclidean loss.
TWO_HEADS = """
name: "two_heads"
layer { name: "in" type: "Input" top: "x" top: "y"
        input_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 } } }
layer { name: "a" type: "InnerProduct" bottom: "x" top: "a"
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "b" type: "InnerProduct" bottom: "x" top: "b"
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu" type: "ReLU" bottom: "b" top: "b" }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "s" }
layer { name: "loss" type: "EuclideanLoss" bottom: "s" bottom: "y" top: "loss" }
"""


# ---- state rules and filtering (pure protobuf, no layers)
@pytest.mark.parametrize("rule, ok", [
    ("phase: TRAIN", True), ("phase: TEST", False), ("min_level: 2", True), ("min_level: 3", False),
    ("max_level: 1", False), ('stage: "a"', True), ('stage: "a" stage: "c"', False),
    ('not_stage: "b"', False), ('not_stage: "c"', True),
])
def test_state_meets_rule(rule, ok):
    state = caffe_pb2.NetState(phase=TRAIN, level=2, stage=["a", "b"])
    assert state_meets_rule(state, text_format.Parse(rule, caffe_pb2.NetStateRule())) is ok


def test_filter_by_phase_include_and_exclude():
    param = net_param("""
      state { phase: TEST }
      layer { name: "t" include { phase: TRAIN } }
      layer { name: "both" }
      layer { name: "not_train" exclude { phase: TRAIN } }
      layer { name: "either" include { phase: TRAIN } include { phase: TEST } }""")
    assert [layer.name for layer in filter_net(param).layer] == ["both", "not_train", "either"]


def test_include_and_exclude_together_is_an_error():
    param = net_param('layer { name: "x" include { phase: TRAIN } exclude { phase: TEST } }')
    with pytest.raises(MinicaffeError, match="'x' specifies both include and exclude"):
        filter_net(param)


def test_insert_splits_names_like_caffe():
    param = insert_splits(net_param("""
      layer { name: "data" top: "x" }
      layer { name: "p" bottom: "x" top: "p" }
      layer { name: "q" bottom: "x" top: "q" }"""))
    names = [(l.name, list(l.bottom), list(l.top)) for l in param.layer]
    assert names[1] == ("x_data_0_split", ["x"], ["x_data_0_split_0", "x_data_0_split_1"])
    assert names[2][1] == ["x_data_0_split_0"] and names[3][1] == ["x_data_0_split_1"]


def test_no_split_for_single_reader_or_in_place_chain():
    param = insert_splits(net_param("""
      layer { name: "data" top: "x" }
      layer { name: "r" bottom: "x" top: "x" }
      layer { name: "q" bottom: "x" top: "q" }"""))
    assert [l.name for l in param.layer] == ["data", "r", "q"]


# ---- building
def test_wiring_split_in_place_and_outputs():
    net = make_net(TWO_HEADS)
    assert "x_in_0_split" in net.layer_names
    assert net.inputs == ["x", "y"] and net.outputs == ["loss"]
    assert net.blobs["b"].shape == (4, 2) and net.blobs["loss"].shape == ()
    assert net.output_blob_loss_weights == [1.0]
    assert list(net.params) == ["a", "b"] and len(net.learnable_params) == 4


def test_backward_needs_and_lr_mult_zero():
    text = TWO_HEADS.replace('name: "a" type: "InnerProduct" bottom: "x" top: "a"',
                             'name: "a" type: "InnerProduct" bottom: "x" top: "a" '
                             'param { lr_mult: 0 } param { lr_mult: 0 }')
    net = make_net(text)
    need = {r.name: r.need_backward for r in net.layer_records}
    assert not need["in"] and not need["a"] and need["b"] and need["loss"]
    assert net.layers[net.layer_names.index("a")].param_propagate_down == [False, False]


def test_force_backward_reaches_inputs_but_not_labels():
    net = make_net("force_backward: true\n" + TWO_HEADS)
    loss_id = net.layer_names.index("loss")
    assert net.layer_records[loss_id].bottom_need_backward == [True, True]  # Euclidean allows both
    assert net.layer_records[net.layer_names.index("x_in_0_split")].need_backward


def test_split_gradient_sums_both_paths():
    """Whole-net gradient w.r.t. the input vs finite differences (needs the Split sum)."""
    net = make_net("force_backward: true\n" + TWO_HEADS)
    rng = np.random.default_rng(0)
    x0 = rng.uniform(-1, 1, (4, 3)).astype(np.float32)
    net.blobs["y"].data[...] = rng.uniform(-1, 1, (4, 2))
    net.blobs["x"].data[...] = x0
    net.forward_backward()
    analytic = net.blobs["x"].diff.copy()
    h, numeric = 1e-2, np.zeros_like(x0)
    for idx in np.ndindex(x0.shape):
        for sign in (1, -1):
            x = x0.copy()
            x[idx] += sign * h
            net.blobs["x"].data[...] = x
            numeric[idx] += sign * net.forward_loss() / (2 * h)
    np.testing.assert_allclose(analytic, numeric, atol=2e-3)


def test_propagate_down_false_stops_gradient():
    text = TWO_HEADS.replace(
        'bottom: "a" bottom: "b" top: "s" }', 'bottom: "a" bottom: "b" top: "s" propagate_down: false propagate_down: true }')
    net = make_net(text)
    assert net.layer_records[net.layer_names.index("sum")].bottom_need_backward == [False, True]
    # Nothing else needs the gradient of "a", so layer "a" no longer runs backward.
    assert not net.layer_records[net.layer_names.index("a")].need_backward


def test_shared_params_by_name():
    text = TWO_HEADS.replace('top: "a"\n', 'top: "a" param { name: "w" } param { name: "bias" }\n') \
                    .replace('top: "b"\n', 'top: "b" param { name: "w" } param { name: "bias" }\n')
    net = make_net(text)
    wa, wb = net.params["a"][0], net.params["b"][0]
    wa.data[0, 0] = 42.0
    assert wb.cpu_data()[0, 0] == 42.0
    assert len(net.learnable_params) == 2


def test_shared_param_shape_mismatch_names_layer():
    text = TWO_HEADS.replace('top: "a"\n', 'top: "a" param { name: "w" }\n') \
                    .replace('top: "b"\n', 'top: "b" param { name: "w" }\n') \
                    .replace("num_output: 2 weight_filler { type: \"gaussian\" std: 0.5 } } }\nlayer { name: \"relu\"",
                             "num_output: 3 weight_filler { type: \"gaussian\" std: 0.5 } } }\nlayer { name: \"relu\"")
    with pytest.raises(MinicaffeError, match="layer 'b': shared parameter 'w' has shape"):
        make_net(text)


def test_loss_weight_scales_loss_and_gradient():
    base = make_net(TWO_HEADS)
    weighted = make_net(TWO_HEADS.replace('top: "loss" }', 'top: "loss" loss_weight: 3 }'))
    for net in (base, weighted):
        net.blobs["x"].data[...] = np.arange(12).reshape(4, 3) / 10
        net.blobs["y"].data[...] = 0.5
    l1, l3 = base.forward_backward(), weighted.forward_backward()
    assert l3 == pytest.approx(3 * l1, rel=1e-5)
    np.testing.assert_allclose(weighted.params["a"][0].diff, 3 * base.params["a"][0].diff, rtol=1e-5)


# ---- errors name what is wrong
@pytest.mark.parametrize("text, message", [
    ('layer { name: "r" type: "ReLU" bottom: "nope" top: "r" }', "unknown bottom blob 'nope'"),
    ('layer { name: "c" type: "Convolutoin" top: "c" }', "unknown layer type 'Convolutoin'.*Did you mean 'Convolution'"),
    ('layer { name: "in" type: "Input" top: "x" top: "y" input_param { shape { dim: 2 dim: 3 } shape { dim: 5 dim: 3 } } }'
     'layer { name: "loss" type: "EuclideanLoss" bottom: "x" bottom: "y" top: "l" }', "layer 'loss'"),
])
def test_construction_errors(text, message):
    with pytest.raises(MinicaffeError, match=message):
        make_net(text)


def test_two_layers_may_share_a_name():
    """Caffe accepts repeated layer names (its mnist_autoencoder example has two layers named
    "loss"); both layers run, and a lookup by name finds the first, as Caffe's
    CopyTrainedLayersFrom does."""
    net = make_net('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }'
                   'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "a" inner_product_param { num_output: 2 } }'
                   'layer { name: "act" type: "ReLU" bottom: "a" top: "r" }'
                   'layer { name: "act" type: "Sigmoid" bottom: "a" top: "s" }')
    assert [n for n in net.layer_names if n == "act"] == ["act", "act"]
    assert net.layer_dict["act"].type == "ReLU"
    net.blobs["x"].data[...] = np.arange(6).reshape(2, 3) - 2.5
    out = net.forward()
    a = net.blobs["a"].data
    np.testing.assert_allclose(out["r"], np.maximum(a, 0))
    np.testing.assert_allclose(out["s"], 1 / (1 + np.exp(-a)), rtol=1e-6)
    weights = net.to_proto()
    weights.layer[1].blobs[0].data[:] = np.arange(6, dtype=np.float32)
    net.copy_trained_layers_from(weights)
    np.testing.assert_array_equal(net.params["ip"][0].data.ravel(), np.arange(6))


@pytest.mark.parametrize("engine, ok", [("DEFAULT", True), ("CAFFE", True), ("CUDNN", False)])
def test_engine_field(engine, ok):
    text = TWO_HEADS.replace('layer { name: "relu" type: "ReLU" bottom: "b" top: "b" }',
                             f'layer {{ name: "relu" type: "ReLU" bottom: "b" top: "b" relu_param {{ engine: {engine} }} }}')
    if ok:
        make_net(text)
    else:
        with pytest.raises(MinicaffeError, match="layer 'relu' .*relu_param.engine is CUDNN"):
            make_net(text)


def test_error_names_prototxt_file(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text('layer { name: "r" type: "ReLU" bottom: "nope" top: "r" }')
    with pytest.raises(MinicaffeError, match=f"{path}: .*unknown bottom blob"):
        Net(str(path), TEST)


# ---- weights in and out; pycaffe API
def test_save_and_copy_round_trip(tmp_path):
    net = make_net(TWO_HEADS)
    net.save(tmp_path / "w.caffemodel")
    other = make_net(TWO_HEADS.replace("std: 0.5", "std: 2.0"))
    other.copy_from(str(tmp_path / "w.caffemodel"))
    for name in ("a", "b"):
        for src, dst in zip(net.params[name], other.params[name]):
            np.testing.assert_array_equal(src.cpu_data(), dst.cpu_data())
    again = Net(net_param(TWO_HEADS), str(tmp_path / "w.caffemodel"), TEST)
    np.testing.assert_array_equal(again.params["a"][0].data, net.params["a"][0].data)


def test_copy_shape_mismatch_and_truncated_file(tmp_path):
    net = make_net(TWO_HEADS)
    path = tmp_path / "w.caffemodel"
    net.save(path)
    bigger = make_net(TWO_HEADS.replace("num_output: 2", "num_output: 3").replace("dim: 4 dim: 2", "dim: 4 dim: 3"))
    with pytest.raises(MinicaffeError, match="shape mismatch.*rename the layer"):
        bigger.copy_from(str(path))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(MinicaffeError, match="w.caffemodel"):
        net.copy_from(str(path))


def test_pycaffe_forward_and_backward():
    net = make_net("force_backward: true\n" + TWO_HEADS)
    out = net.forward(x=np.ones((4, 3)), y=np.zeros((4, 2)))
    assert set(out) == {"loss"} and out["loss"].shape == ()
    diffs = net.backward()
    assert set(diffs) == {"x", "y"} and diffs["x"].shape == (4, 3) and np.abs(diffs["x"]).sum() > 0
    with pytest.raises(MinicaffeError, match="'z' is not an input"):
        net.forward(z=np.ones(3))


# ---- phases given as pycaffe does, or as strings
def test_phase_as_enum_or_string_and_bad_phases(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(TWO_HEADS)
    for phase, expected in ((TEST, TEST), (TRAIN, TRAIN), ("TEST", TEST), ("train", TRAIN)):
        assert Net(str(path), phase).phase == expected
        assert Net(str(path), phase=phase).phase == expected
    for bad in (2, -1, "VALIDATE", True):
        with pytest.raises(MinicaffeError, match="phase must be TRAIN or TEST"):
            Net(str(path), phase=bad)
    with pytest.raises(MinicaffeError, match="neither a phase .* nor an existing weights file"):
        Net(str(path), "TSET")


# ---- permissive sharing: one memory, each layer's own shape
def test_permissive_sharing_keeps_each_layers_shape():
    net = make_net("""
      layer { name: "in" type: "Input" top: "x" top: "z"
              input_param { shape { dim: 1 dim: 3 } shape { dim: 1 dim: 2 } } }
      layer { name: "a" type: "InnerProduct" bottom: "x" top: "a" param { name: "w" }
              inner_product_param { num_output: 2 bias_term: false } }
      layer { name: "b" type: "InnerProduct" bottom: "z" top: "b"
              param { name: "w" share_mode: PERMISSIVE }
              inner_product_param { num_output: 3 bias_term: false } }""")
    wa, wb = net.params["a"][0], net.params["b"][0]
    assert wa.shape == (2, 3) and wb.shape == (3, 2)
    wa.data[...] = [[1, 2, 3], [4, 5, 6]]  # the six shared values, read as 3x2 by layer b
    np.testing.assert_array_equal(wb.data, [[1, 2], [3, 4], [5, 6]])
    out = net.forward(x=[[1, 0, -1]], z=[[1, 10]])
    np.testing.assert_array_equal(out["a"], [[1 - 3, 4 - 6]])
    np.testing.assert_array_equal(out["b"], [[1 + 20, 3 + 40, 5 + 60]])
    assert len(net.learnable_params) == 1


# ---- loss layers without a top get an anonymous one (Caffe's AutoTopBlobs)
def test_a_loss_layer_without_a_top_still_counts():
    net = make_net("""
      force_backward: true
      layer { name: "in" type: "Input" top: "x" top: "label"
              input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }
      layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label" }""")
    net.blobs["x"].data[...] = [[0, 0, 0], [np.log(2), 0, 0]]
    net.blobs["label"].data[...] = [1, 0]
    # -log softmax: log 3 for the uniform row; -log(2 / 4) = log 2 for the other.
    assert net.forward_loss() == pytest.approx((np.log(3) + np.log(2)) / 2, rel=1e-6)
    assert net.outputs == [] and "(automatic)" in net.blob_names
    net.backward_all()
    assert np.abs(net.blobs["x"].diff).sum() > 0  # the loss drives the gradient


# ---- loading weights never leaves the net silently on its fillers
def test_weights_that_match_no_layer_are_an_error(tmp_path, caplog):
    make_net(TWO_HEADS.replace('name: "a"', 'name: "other_a"').replace('name: "b"', 'name: "other_b"')) \
        .save(tmp_path / "other.caffemodel")
    with pytest.raises(MinicaffeError, match=r"other.caffemodel: no layer of net 'two_heads' got weights "
                                             r".*learnable layers are \['a', 'b'\]"):
        Net(net_param(TWO_HEADS), TEST, weights=str(tmp_path / "other.caffemodel"))
    # A legacy V1 file (field 2, `layers`, holding one layer named conv1) is upgraded
    # first, so the error names its layers too.
    v1 = tmp_path / "v1.caffemodel"
    v1.write_bytes(b"\x12\x07\x22\x05conv1")
    with pytest.raises(MinicaffeError, match=r"v1.caffemodel: no layer .*\(its layers are \['conv1'\]\)"):
        make_net(TWO_HEADS).copy_from(str(v1))


def test_partly_matching_weights_say_which_layers_kept_their_fillers(tmp_path, caplog):
    make_net(TWO_HEADS.replace('name: "b"', 'name: "other_b"')).save(tmp_path / "half.caffemodel")
    with caplog.at_level("INFO", logger="minicaffe.net"):
        make_net(TWO_HEADS).copy_from(str(tmp_path / "half.caffemodel"))
    assert "copied for 1 of 2 learnable layers (a)" in caplog.text
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"Layers b got no weights from {tmp_path / 'half.caffemodel'} and keep their "
                        "filler initialisation"]


# ---- what each layer's backward may be asked for
def test_layers_learn_which_bottom_diffs_backward_may_need():
    deploy = """
        layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }
        layer { name: "pool" type: "Pooling" bottom: "x" top: "pool"
                pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
        layer { name: "ip" type: "InnerProduct" bottom: "pool" top: "ip"
                inner_product_param { num_output: 2 } }
    """
    # No loss: no layer will ever be asked for a bottom diff (Caffe's bottom_need_backward).
    net = make_net(deploy)
    assert not net.layer_dict["pool"].backward_may_need(0)
    assert not net.layer_dict["ip"].backward_may_need(0)
    # force_backward: every bottom that allows it, as Caffe's Net decides.
    net = make_net("force_backward: true\n" + deploy)
    assert net.layer_dict["pool"].backward_may_need(0) and net.layer_dict["ip"].backward_may_need(0)
    # A layer used on its own may be asked anything.
    assert create_layer(net.layer_dict["pool"].layer_param).backward_may_need(0)


def test_layers_learn_which_param_diffs_backward_may_need():
    # lr_mult alone says a blob learns; whether its diff may ever be asked also needs the
    # Net to run the layer's backward, which a deploy net (no loss) never does.
    layers = """
        layer { name: "x" type: "Input" top: "x" top: "t"
                input_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 2 } } }
        layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
                inner_product_param { num_output: 2 } }
        layer { name: "frozen" type: "InnerProduct" bottom: "ip" top: "y"
                param { lr_mult: 0 } param { lr_mult: 0 } inner_product_param { num_output: 2 } }
    """
    loss = 'layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "loss" }'
    ip, frozen = (make_net(layers).layer_dict[name] for name in ("ip", "frozen"))
    assert ip.param_propagate(0) and not ip.backward_runs   # lr_mult 1 but no loss
    assert not ip.param_may_need(0) and not ip.param_may_need(1)
    net = make_net(layers + loss)
    ip, frozen = net.layer_dict["ip"], net.layer_dict["frozen"]
    assert ip.backward_runs and ip.param_may_need(0) and ip.param_may_need(1)
    assert frozen.backward_runs and not frozen.param_may_need(0)   # lr_mult 0
    assert not ip.param_may_need(2)                                 # no such blob
    # force_backward: every layer's backward runs and every blob gets its diff.
    frozen = make_net("force_backward: true\n" + layers).layer_dict["frozen"]
    assert frozen.param_may_need(0) and frozen.param_may_need(1)
    # A layer used on its own may be asked anything its flags allow.
    alone = create_layer(net.layer_dict["ip"].layer_param)
    alone.param_propagate_down = [True, False]
    assert alone.param_may_need(0) and not alone.param_may_need(1)
