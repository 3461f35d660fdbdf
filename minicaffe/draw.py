"""Pictures of networks: pycaffe's `caffe.draw`, and the engine of `minicaffe draw`.

    from minicaffe import draw, protoio
    from minicaffe.proto import caffe_pb2
    net = protoio.read_net_param("examples/mnist/lenet_train_test.prototxt")
    png = draw.draw_net(net, "LR", ext="png", phase=caffe_pb2.TEST)   # the image, as bytes
    draw.draw_net_to_file(net, "lenet.svg", rankdir="TB")            # the format from the extension

The drawing follows Caffe's: each layer is a box labelled with its name and type and,
for convolution, deconvolution and pooling, the kernel size, stride and pad that set
its output size; each blob is a grey octagon; an edge runs from every bottom blob to
its layer and from the layer to every top blob, the latter labelled with what the layer
makes (`num_output`, or a Data layer's batch size). Boxes are coloured by type: blue by
default, red for (de)convolutions, orange for pooling, purple for inner products, and
green for an in-place layer (a ReLU whose top is its bottom), which therefore draws as
a loop on its blob. `display_lrm` adds the learning-rate multipliers of the layers that
learn.

`phase` keeps the layers that a net built in that phase would hold (the include and
exclude rules of `minicaffe.net.filter_net`, at level 0 with no stages); None keeps
every layer of the definition. The deprecated net-level `input` fields are drawn as the
Input layer that building the net turns them into.

pydot writes the graph in Graphviz's DOT language and Graphviz's `dot` program lays it
out and renders it, so every format `dot -T` knows (png, svg, pdf, ...) is available.
The formats `dot`, `gv` and `raw` are the graph's DOT source itself, made without
Graphviz.

Where this differs from pycaffe, on purpose: nodes are named by position, so two layers
with the same label stay two boxes; every blob is styled as a blob; the kernel, stride
and pad show both sides when they differ (`3x1`) and global pooling says so; with
rankdir TB or BT the label is a stack of record fields rather than one line; and
errors are `MinicaffeError`s naming the layer (pycaffe raises ValueError).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from minicaffe.common import MinicaffeError
from minicaffe.proto import caffe_pb2

# Graphviz attributes of the three kinds of node (Caffe's colours).
LAYER_STYLE_DEFAULT = {"shape": "record", "fillcolor": "#6495ED", "style": "filled"}
NEURON_LAYER_STYLE = {"shape": "record", "fillcolor": "#90EE90", "style": "filled"}
BLOB_STYLE = {"shape": "octagon", "fillcolor": "#E0E0E0", "style": "filled"}
TYPE_COLOUR = {"Convolution": "#FF5050", "Deconvolution": "#FF5050",
               "Pooling": "#FF9900", "InnerProduct": "#CC33FF"}
LEARNING_TYPES = ("Convolution", "Deconvolution", "InnerProduct")
RANKDIRS = ("LR", "RL", "TB", "BT")
# Formats that are the graph's DOT source, written without running Graphviz.
SOURCE_FORMATS = ("dot", "gv", "raw")
PHASES = {"TRAIN": caffe_pb2.TRAIN, "TEST": caffe_pb2.TEST, "ALL": None}


# ---------------------------------------------------------------- labels

def _pydot():
    # pydot is optional (the `docs` extra): importing this module must not need it.
    from minicaffe.tools import optional_import
    return optional_import("pydot", "draw")


def _number(x: float) -> str:
    """A multiplier as a person writes it: 1.0, 0.1, 0.01 (float32 noise rounded away)."""
    text = f"{x:.6g}"
    return text + ".0" if text.lstrip("-").isdigit() else text


def _escape(text: str, record: bool = True) -> str:
    """`text` made literal inside a quoted DOT string: its quotes and backslashes escaped,
    and in a record label also the record syntax's own characters ({ } | < >)."""
    text = text.replace("\\", "\\\\")
    for char in '{}|<>"' if record else '"':
        text = text.replace(char, "\\" + char)
    return text


def _sides(h: int, w: int, values, default: int) -> str:
    """A kernel/stride/pad: the _h/_w pair when set, else the (repeated) field's values,
    else the default; one number when all sides agree (`5`), else all of them (`3x1`)."""
    sides = [h, w] if (h or w) else (list(values) or [default])
    return str(sides[0]) if len(set(sides)) == 1 else "x".join(map(str, sides))


def _spatial_lines(layer) -> list[str]:
    """The kernel, stride and pad of a (de)convolution or pooling layer."""
    if layer.type in ("Convolution", "Deconvolution"):
        p = layer.convolution_param
        return [f"kernel size: {_sides(p.kernel_h, p.kernel_w, p.kernel_size, 1)}",
                f"stride: {_sides(p.stride_h, p.stride_w, p.stride, 1)}",
                f"pad: {_sides(p.pad_h, p.pad_w, p.pad, 0)}"]
    p = layer.pooling_param
    kernel = "global" if p.global_pooling else _sides(p.kernel_h, p.kernel_w, [p.kernel_size], 0)
    return [f"kernel size: {kernel}", f"stride: {_sides(p.stride_h, p.stride_w, [p.stride], 1)}",
            f"pad: {_sides(p.pad_h, p.pad_w, [p.pad], 0)}"]


def get_layer_lr_mult(layer) -> tuple[float, float]:
    """(weights, bias) learning-rate multipliers of a Convolution, Deconvolution or
    InnerProduct layer; a multiplier the layer does not set is 1."""
    if layer.type not in LEARNING_TYPES:
        raise MinicaffeError(f"layer {layer.name!r} ({layer.type}) learns nothing, so it has no "
                             "learning-rate multiplier; only Convolution, Deconvolution and "
                             "InnerProduct layers do")
    if len(layer.param) > 2:
        raise MinicaffeError(f"layer {layer.name!r} ({layer.type}) has {len(layer.param)} param "
                             "entries; a layer of this type has at most two (weights, bias)")
    mults = [p.lr_mult for p in layer.param] + [1.0, 1.0]  # lr_mult's own default is 1 too
    return mults[0], mults[1]


def layer_lines(layer, display_lrm: bool = False) -> list[str]:
    """The lines of a layer's box: name, type, then what sets the size of its top."""
    kind = layer.type
    if kind == "Pooling":
        kind += " " + caffe_pb2.PoolingParameter.PoolMethod.Name(layer.pooling_param.pool)
    lines = [layer.name, f"({kind})"]
    if layer.type in ("Convolution", "Deconvolution", "Pooling"):
        lines += _spatial_lines(layer)
    if display_lrm and layer.type in LEARNING_TYPES:
        weights, bias = get_layer_lr_mult(layer)
        if weights or bias:  # as in Caffe, a frozen layer (both 0) shows none
            lines.append(f"lr mult: {_number(weights)}, {_number(bias)}")
    return lines


def get_layer_label(layer, rankdir: str, display_lrm: bool = False) -> str:
    """The label of a layer's box, quoted for DOT.

    A record's fields run across the rank direction, so with LR or RL the lines are one
    field broken by newlines, and with TB or BT they are fields stacked in braces."""
    lines = [_escape(line) for line in layer_lines(layer, display_lrm)]
    if rankdir in ("TB", "BT"):
        return '"{' + "|".join(lines) + '}"'
    return '"' + "\\n".join(lines) + '"'


def choose_color_by_layertype(layertype: str) -> str:
    """The fill colour of a box of type `layertype`."""
    return TYPE_COLOUR.get(layertype, LAYER_STYLE_DEFAULT["fillcolor"])


def get_edge_label(layer) -> str:
    """The label of the edges from `layer` to its tops: its number of outputs, or the
    batch size of a Data layer; `""` (an empty DOT string) for any other layer."""
    if layer.type == "Data":
        return f"Batch {layer.data_param.batch_size}"
    if layer.type in ("Convolution", "Deconvolution"):
        return str(layer.convolution_param.num_output)
    if layer.type == "InnerProduct":
        return str(layer.inner_product_param.num_output)
    return '""'


def _quoted(label: str) -> str:
    return label if label.startswith('"') else f'"{label}"'


# ---------------------------------------------------------------- the graph

def _phase(phase):
    """caffe_pb2.TRAIN / TEST, or None for every layer; the names TRAIN, TEST, ALL too."""
    if isinstance(phase, str):
        if phase.upper() not in PHASES:
            raise MinicaffeError(f"phase must be TRAIN, TEST or ALL, got {phase!r}")
        return PHASES[phase.upper()]
    if phase is not None and phase not in (caffe_pb2.TRAIN, caffe_pb2.TEST):
        raise MinicaffeError(f"phase must be caffe_pb2.TRAIN, caffe_pb2.TEST or None, got {phase!r}")
    return phase


def get_pydot_graph(caffe_net, rankdir: str, label_edges: bool = True, phase=None,
                    display_lrm: bool = False):
    """A pydot.Dot of `caffe_net` (a NetParameter): one node per layer `phase` keeps and
    one per blob they name, one edge per bottom and per top."""
    from minicaffe.net import filter_net
    from minicaffe.upgrade import upgrade_net_as_needed

    pydot = _pydot()
    if not isinstance(caffe_net, caffe_pb2.NetParameter):
        raise MinicaffeError(f"draw a NetParameter (e.g. minicaffe.protoio.read_net_param(path)), "
                             f"not a {type(caffe_net).__name__}")
    if rankdir not in RANKDIRS:
        raise MinicaffeError(f"rankdir must be one of {', '.join(RANKDIRS)}, got {rankdir!r}")
    phase = _phase(phase)
    # Today's format: a V0/V1 file draws its layers, net-level inputs draw as an Input layer.
    param = caffe_pb2.NetParameter()
    param.CopyFrom(caffe_net)
    upgrade_net_as_needed(param, param.name or "the net")
    if phase is not None:
        # The layers of a net built in `phase`: filter_net reads the phase from the state.
        stated = caffe_pb2.NetParameter()
        stated.CopyFrom(param)
        stated.state.phase = phase
        param = filter_net(stated)
    graph = pydot.Dot(graph_name=_quoted(_escape(param.name or "Net", record=False)), graph_type="digraph",
                      rankdir=rankdir)
    blobs: dict[str, str] = {}

    def blob_node(name: str) -> str:
        # One node per blob name: an in-place layer's top is the node of its bottom.
        if name not in blobs:
            blobs[name] = f"blob{len(blobs)}"
            graph.add_node(pydot.Node(blobs[name], label=_quoted(_escape(name, record=False)), **BLOB_STYLE))
        return blobs[name]

    for i, layer in enumerate(param.layer):
        in_place = len(layer.bottom) == len(layer.top) == 1 and layer.bottom[0] == layer.top[0]
        style = (NEURON_LAYER_STYLE if in_place else
                 dict(LAYER_STYLE_DEFAULT, fillcolor=choose_color_by_layertype(layer.type)))
        node = f"layer{i}"
        graph.add_node(pydot.Node(node, label=get_layer_label(layer, rankdir, display_lrm), **style))
        for bottom in layer.bottom:
            graph.add_edge(pydot.Edge(blob_node(bottom), node))
        label = _quoted(get_edge_label(layer)) if label_edges else '""'
        for top in layer.top:
            graph.add_edge(pydot.Edge(node, blob_node(top), label=label))
    return graph


def render(graph, ext: str) -> bytes:
    """`graph` (a pydot.Dot) in the format `ext`, as bytes: laid out by Graphviz's `dot`,
    or its DOT source for dot/gv/raw."""
    ext = ext.lower()
    if ext in SOURCE_FORMATS:
        return graph.to_string().encode()
    if shutil.which("dot") is None:
        raise MinicaffeError("Graphviz's `dot` program was not found on PATH; drawing a net as "
                             f"{ext!r} needs it to lay out the graph. Install Graphviz (Debian/Ubuntu: "
                             "apt-get install graphviz; macOS: brew install graphviz), or ask for "
                             "'dot' to get the graph's source only.")
    # dot reads the DOT source on stdin and writes the picture on stdout.
    done = subprocess.run(["dot", f"-T{ext}"], input=graph.to_string().encode(), capture_output=True)
    if done.returncode != 0:  # e.g. a format dot does not know, in its own words
        complaint = " ".join(done.stderr.decode(errors="replace").split())
        raise MinicaffeError(f"Graphviz could not draw the net as {ext!r}: {complaint}")
    return done.stdout


def draw_net(caffe_net, rankdir: str, ext: str = "png", phase=None, display_lrm: bool = False) -> bytes:
    """The picture of `caffe_net` (a NetParameter) in the format `ext`, as bytes."""
    return render(get_pydot_graph(caffe_net, rankdir, phase=phase, display_lrm=display_lrm), ext)


def draw_net_to_file(caffe_net, filename, rankdir: str = "LR", phase=None,
                     display_lrm: bool = False) -> None:
    """Write the picture of `caffe_net` to `filename`; its extension picks the format
    (`.dot`, `.gv` or `.raw` for the DOT source)."""
    ext = Path(filename).suffix.lstrip(".")
    if not ext:
        raise MinicaffeError(f"{filename}: give the file an extension to pick the format "
                             "(.svg, .png, .pdf, .dot)")
    data = draw_net(caffe_net, rankdir, ext, phase, display_lrm)
    with open(filename, "wb") as f:
        f.write(data)
