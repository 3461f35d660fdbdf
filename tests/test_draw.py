"""minicaffe.draw, pycaffe's `caffe.draw`: graphs and pictures of NetParameters.

The graph is checked against counts made straight from the definitions (one node per
layer and per blob, one edge per bottom and per top), on LeNet by hand and on every net
prototxt of Caffe's models/ and examples/ through Graphviz's own SVG.
"""
import shutil
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from google.protobuf import text_format

from minicaffe import draw
from minicaffe.common import MinicaffeError
from minicaffe.proto import caffe_pb2
from tests.zoo import CAFFE_MODELS, caffe_prototxts

ROOT = Path(__file__).resolve().parent.parent
LENET_TRAIN_TEST = ROOT / "examples/mnist/lenet_train_test.prototxt"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def parse(text: str) -> caffe_pb2.NetParameter:
    net = caffe_pb2.NetParameter()
    text_format.Merge(text, net)
    return net


def read(path) -> caffe_pb2.NetParameter:
    return parse(Path(path).read_text())


def svg_counts(svg: bytes) -> tuple[int, int]:
    """(nodes, edges) of a Graphviz SVG: each is a <g> of class node or edge."""
    groups = [g.get("class") for g in ET.fromstring(svg).iter() if g.tag.endswith("}g")]
    return groups.count("node"), groups.count("edge")


def svg_texts(svg: bytes) -> set[str]:
    return {t.text for t in ET.fromstring(svg).iter() if t.tag.endswith("}text") and t.text}


def layer_name(node) -> str:
    """The first line of a layer box's label: the layer's name."""
    label = node.get("label").strip('"').lstrip("{")
    return label.split("\\n")[0].split("|")[0]


def graph_layers(graph) -> list:
    return [n for n in graph.get_nodes() if n.get_name().startswith("layer")]


# Every net definition of Caffe's models/ and examples/ (solvers are not nets).
ZOO_NETS = [p for p in caffe_prototxts() if "solver" not in p.name]


@needs_dot
@pytest.mark.parametrize("path", ZOO_NETS, ids=lambda p: str(p.relative_to(CAFFE_MODELS)))
def test_every_caffe_net_draws_one_node_per_layer_and_blob(path):
    net = read(path)
    svg = draw.draw_net(net, "LR", ext="svg")
    # Counted from the file: the deprecated `input` fields become one Input layer.
    layers = len(net.layer) + (1 if net.input else 0)
    blobs = set(net.input) | {b for layer in net.layer for b in [*layer.bottom, *layer.top]}
    edges = len(net.input) + sum(len(layer.bottom) + len(layer.top) for layer in net.layer)
    assert svg_counts(svg) == (layers + len(blobs), edges)
    assert {layer.name for layer in net.layer} <= svg_texts(svg)


@needs_dot
def test_draw_net_makes_png_by_default():
    data = draw.draw_net(read(LENET_TRAIN_TEST), "LR")
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert width > 100 and height > 100


def test_lenet_graph_by_hand():
    # lenet_train_test: 11 layers (two Data layers, one per phase) and 10 blobs (data,
    # label, conv1, pool1, conv2, pool2, ip1, ip2, accuracy, loss; relu1 works in place on
    # ip1). Edges: 11 bottoms (accuracy and loss have two each) and 13 tops.
    net = read(LENET_TRAIN_TEST)
    graph = draw.get_pydot_graph(net, "LR")
    assert (len(graph.get_nodes()), len(graph.get_edges())) == (11 + 10, 11 + 13)
    # TRAIN drops the test Data layer and accuracy (2 bottoms, 1 top, its blob);
    # TEST drops only the training Data layer.
    train = draw.get_pydot_graph(net, "LR", phase=caffe_pb2.TRAIN)
    test = draw.get_pydot_graph(net, "LR", phase=caffe_pb2.TEST)
    assert (len(train.get_nodes()), len(train.get_edges())) == (9 + 9, 9 + 10)
    assert (len(test.get_nodes()), len(test.get_edges())) == (10 + 10, 11 + 11)


def test_phase_keeps_that_phases_layers():
    net = read(LENET_TRAIN_TEST)

    def layers_and_batches(phase):
        graph = draw.get_pydot_graph(net, "TB", phase=phase)
        names = [layer_name(n) for n in graph_layers(graph)]
        batches = {e.get("label").strip('"') for e in graph.get_edges()
                   if (e.get("label") or "").startswith('"Batch')}
        return names, batches

    everything, _ = layers_and_batches(None)
    assert everything == [layer.name for layer in net.layer]
    train, train_batches = layers_and_batches(caffe_pb2.TRAIN)
    test, test_batches = layers_and_batches(caffe_pb2.TEST)
    assert "accuracy" not in train and "accuracy" in test
    assert train_batches == {"Batch 64"} and test_batches == {"Batch 100"}  # the file's batch sizes
    assert layers_and_batches("TEST") == (test, test_batches)  # the CLI's names work too


def test_a_layer_with_include_and_exclude_is_refused():
    net = parse('layer { name: "odd" type: "ReLU" bottom: "x" top: "x" '
                'include { phase: TRAIN } exclude { phase: TEST } }')
    assert len(graph_layers(draw.get_pydot_graph(net, "LR"))) == 1  # all layers: no rule read
    with pytest.raises(MinicaffeError, match="'odd'.*both include and exclude"):
        draw.get_pydot_graph(net, "LR", phase=caffe_pb2.TRAIN)


LEARNERS = parse("""
name: "lrm"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        param { lr_mult: 1 } param { lr_mult: 2 } convolution_param { num_output: 2 kernel_size: 3 } }
layer { name: "up" type: "Deconvolution" bottom: "conv" top: "up"
        param { lr_mult: 0.1 } convolution_param { num_output: 2 kernel_size: 2 stride: 2 } }
layer { name: "frozen" type: "InnerProduct" bottom: "up" top: "frozen"
        param { lr_mult: 0 } param { lr_mult: 0 } inner_product_param { num_output: 3 } }
layer { name: "plain" type: "InnerProduct" bottom: "frozen" top: "plain" inner_product_param { num_output: 3 } }
layer { name: "relu" type: "ReLU" bottom: "plain" top: "plain" }
""")


def test_display_lrm_labels_the_learning_layers():
    def labels(display_lrm):
        graph = draw.get_pydot_graph(LEARNERS, "LR", display_lrm=display_lrm)
        return {layer_name(n): n.get("label") for n in graph_layers(graph)}

    shown = labels(True)
    assert shown["conv"].endswith('\\nlr mult: 1.0, 2.0"')
    assert shown["up"].endswith('\\nlr mult: 0.1, 1.0"')  # the bias's multiplier is unset: 1
    assert shown["plain"].endswith('\\nlr mult: 1.0, 1.0"')  # no param entries at all
    assert "lr mult" not in shown["frozen"]  # as in Caffe: both 0 shows nothing
    assert "lr mult" not in shown["relu"] and "lr mult" not in shown["data"]
    assert not any("lr mult" in label for label in labels(False).values())


def test_get_layer_lr_mult():
    layers = {layer.name: layer for layer in LEARNERS.layer}
    assert draw.get_layer_lr_mult(layers["conv"]) == (1.0, 2.0)
    assert draw.get_layer_lr_mult(layers["frozen"]) == (0.0, 0.0)
    with pytest.raises(MinicaffeError, match="'relu' .ReLU. learns nothing"):
        draw.get_layer_lr_mult(layers["relu"])
    three = caffe_pb2.LayerParameter(name="x", type="InnerProduct", param=[{}, {}, {}])
    with pytest.raises(MinicaffeError, match="'x' .InnerProduct. has 3 param entries"):
        draw.get_layer_lr_mult(three)


def test_labels_colours_and_edge_labels():
    net = read(LENET_TRAIN_TEST)
    layers = {}
    for layer in net.layer:  # the first "mnist" is the training one (batch 64)
        layers.setdefault(layer.name, layer)
    # Across the rank direction: one field of lines for LR, stacked fields for TB.
    assert (draw.get_layer_label(layers["conv1"], "LR")
            == '"conv1\\n(Convolution)\\nkernel size: 5\\nstride: 1\\npad: 0"')
    assert draw.get_layer_label(layers["pool1"], "TB") == '"{pool1|(Pooling MAX)|kernel size: 2|stride: 2|pad: 0}"'
    assert [draw.get_edge_label(layers[n]) for n in ("mnist", "conv1", "ip1", "pool1")] == \
        ["Batch 64", "20", "500", '""']
    assert [draw.choose_color_by_layertype(t) for t in ("Convolution", "Pooling", "InnerProduct", "ReLU")] \
        == ["#FF5050", "#FF9900", "#CC33FF", "#6495ED"]
    graph = draw.get_pydot_graph(net, "LR", phase=caffe_pb2.TEST)
    fill = {layer_name(n): n.get("fillcolor") for n in graph_layers(graph)}
    assert fill["conv1"] == "#FF5050" and fill["relu1"] == "#90EE90"  # in place: green
    unlabelled = draw.get_pydot_graph(net, "LR", label_edges=False)
    assert {e.get("label") for e in unlabelled.get_edges()} <= {None, '""'}


def test_rectangular_kernels_and_global_pooling_say_so():
    net = parse('layer { name: "c" type: "Convolution" convolution_param { num_output: 1 '
                'kernel_h: 3 kernel_w: 1 stride: 2 pad_h: 1 pad_w: 0 } }'
                'layer { name: "p" type: "Pooling" pooling_param { pool: AVE global_pooling: true } }')
    conv, pool = net.layer
    assert draw.layer_lines(conv)[2:] == ["kernel size: 3x1", "stride: 2", "pad: 1x0"]
    assert draw.layer_lines(pool)[1:3] == ["(Pooling AVE)", "kernel size: global"]


@needs_dot
def test_odd_names_are_drawn_literally():
    name, blob = 'a|b {c} <d> "e" \\f', 'x"y'
    net = caffe_pb2.NetParameter(layer=[caffe_pb2.LayerParameter(name=name, type="Input", top=[blob])])
    texts = svg_texts(draw.draw_net(net, "TB", ext="svg"))
    assert name in texts and blob in texts


def test_dot_source_needs_no_graphviz(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot here
    net = read(LENET_TRAIN_TEST)
    source = draw.draw_net(net, "LR", ext="dot")
    assert source.startswith(b"digraph") and b"conv1" in source and b"->" in source
    out = tmp_path / "lenet.raw"
    draw.draw_net_to_file(net, out)
    assert out.read_bytes() == source
    with pytest.raises(MinicaffeError, match="Graphviz's `dot`.*apt-get install graphviz"):
        draw.draw_net(net, "LR", ext="svg")


@needs_dot
def test_draw_net_to_file_picks_the_format_from_the_extension(tmp_path):
    net = read(LENET_TRAIN_TEST)
    draw.draw_net_to_file(net, tmp_path / "lenet.svg", "TB", phase=caffe_pb2.TEST, display_lrm=True)
    texts = svg_texts((tmp_path / "lenet.svg").read_bytes())
    assert "accuracy" in texts and "lr mult: 1.0, 2.0" in texts
    draw.draw_net_to_file(net, str(tmp_path / "lenet.png"))
    assert (tmp_path / "lenet.png").read_bytes()[:8] == PNG_SIGNATURE
    with pytest.raises(MinicaffeError, match="extension"):
        draw.draw_net_to_file(net, tmp_path / "lenet")
    with pytest.raises(MinicaffeError, match="Graphviz could not draw the net as 'nosuch'"):
        draw.draw_net_to_file(net, tmp_path / "lenet.nosuch")


def test_bad_arguments_are_named():
    with pytest.raises(MinicaffeError, match="NetParameter.*not a str"):
        draw.get_pydot_graph("lenet.prototxt", "LR")
    with pytest.raises(MinicaffeError, match="rankdir"):
        draw.get_pydot_graph(caffe_pb2.NetParameter(), "UP")
    with pytest.raises(MinicaffeError, match="phase"):
        draw.get_pydot_graph(caffe_pb2.NetParameter(), "LR", phase=7)


def test_a_v1_net_draws_its_layers_upgraded():
    """A V1 file (`layers` with enum types) is drawn as the net it upgrades to."""
    v1 = text_format.Parse("""name: "old"
        input: "x" input_dim: 1 input_dim: 1 input_dim: 4 input_dim: 4
        layers { name: "ip" type: INNER_PRODUCT bottom: "x" top: "ip" inner_product_param { num_output: 2 } }
        layers { name: "relu" type: RELU bottom: "ip" top: "ip" }""", caffe_pb2.NetParameter())
    source = draw.get_pydot_graph(v1, "LR").to_string()
    for label in ("(Input)", "(InnerProduct)", "(ReLU)"):
        assert label in source
    assert len(v1.layers) == 2 and not v1.layer  # the caller's message is left as it was
