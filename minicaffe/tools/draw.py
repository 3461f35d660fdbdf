"""`minicaffe draw`: a picture of a network (Caffe's `python/draw_net.py` and `caffe/draw.py`).

    minicaffe draw examples/mnist/lenet_train_test.prototxt lenet.svg [--rankdir LR] [--phase TRAIN]

The drawing is Caffe's: every layer is a box labelled with its name, type and the
parameters that set its output size (kernel, stride, pad; `num_output` on the edges),
every blob an octagon, and an edge runs from each bottom blob to the layer and from the
layer to each top blob. An in-place layer (ReLU with top == bottom) therefore draws as a
loop on its blob, as in Caffe. `--phase` keeps the layers a net of that phase would
have (include/exclude rules); the default, ALL, draws every layer of the file.

pydot writes the graph in Graphviz's DOT language; Graphviz's `dot` program lays it out
and renders it. The format is the output file's extension (svg, png, pdf, dot, ...).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from minicaffe import protoio
from minicaffe.common import MinicaffeError
from minicaffe.net import filter_net, upgrade_inputs
from minicaffe.proto import caffe_pb2
from minicaffe.tools import optional_import

# Caffe's colours: layers blue, convolutions red, pooling orange, inner products purple.
LAYER_STYLE = {"shape": "record", "fillcolor": "#6495ED", "style": "filled"}
TYPE_COLOUR = {"Convolution": "#FF5050", "Deconvolution": "#FF5050",
               "Pooling": "#FF9900", "InnerProduct": "#CC33CC"}
BLOB_STYLE = {"shape": "octagon", "fillcolor": "#E0E0E0", "style": "filled"}
PHASES = {"TRAIN": caffe_pb2.TRAIN, "TEST": caffe_pb2.TEST, "ALL": None}


def _first(values, default):
    return values[0] if len(values) else default


def layer_label(layer, separator: str = "\\n") -> str:
    """`conv1 (Convolution)` plus the parameters that decide the top's size."""
    lines = [layer.name, f"({layer.type})"]
    if layer.type in ("Convolution", "Deconvolution"):
        p = layer.convolution_param
        lines += [f"kernel size: {p.kernel_h or _first(p.kernel_size, 1)}",
                  f"stride: {p.stride_h or _first(p.stride, 1)}",
                  f"pad: {p.pad_h or _first(p.pad, 0)}"]
    elif layer.type == "Pooling":
        p = layer.pooling_param
        lines += [f"pool type: {caffe_pb2.PoolingParameter.PoolMethod.Name(p.pool)}",
                  f"kernel size: {p.kernel_h or p.kernel_size}",
                  f"stride: {p.stride_h or p.stride}", f"pad: {p.pad_h or p.pad}"]
    return separator.join(lines)


def edge_label(layer) -> str:
    """The number of outputs a layer makes, written on its outgoing edges (Caffe's get_edge_label)."""
    if layer.type == "Data":
        return f"Batch {layer.data_param.batch_size}"
    if layer.type in ("Convolution", "Deconvolution"):
        return str(layer.convolution_param.num_output)
    if layer.type == "InnerProduct":
        return str(layer.inner_product_param.num_output)
    return ""


def net_graph(param, rankdir: str = "LR", phase: str = "ALL"):
    """A pydot.Dot of `param` (a NetParameter), with the layers `phase` keeps."""
    pydot = optional_import("pydot", "draw")

    if phase not in PHASES:
        raise MinicaffeError(f"--phase must be TRAIN, TEST or ALL, got {phase!r}")
    if rankdir not in ("LR", "RL", "TB", "BT"):
        raise MinicaffeError(f"--rankdir must be LR, RL, TB or BT, got {rankdir!r}")
    param = upgrade_inputs(param)
    if PHASES[phase] is not None:
        param.state.phase = PHASES[phase]
        param = filter_net(param)
    graph = pydot.Dot(graph_name=f'"{param.name or "Net"}"', graph_type="digraph",
                      rankdir=rankdir, compound="true", fontname="Helvetica")
    blobs: dict[str, str] = {}

    def blob_node(name: str) -> str:
        if name not in blobs:
            blobs[name] = f"blob{len(blobs)}"
            graph.add_node(pydot.Node(blobs[name], label=f'"{name}"', **BLOB_STYLE))
        return blobs[name]

    for i, layer in enumerate(param.layer):
        style = dict(LAYER_STYLE, fillcolor=TYPE_COLOUR.get(layer.type, LAYER_STYLE["fillcolor"]))
        node = f"layer{i}"
        # A record label is laid out across the rank direction; braces keep it stacked.
        label = layer_label(layer, "|") if rankdir in ("TB", "BT") else layer_label(layer)
        label = label.replace('"', "'")
        graph.add_node(pydot.Node(node, label=f'"{{{label}}}"' if rankdir in ("TB", "BT")
                                  else f'"{label}"', **style))
        for bottom in layer.bottom:
            graph.add_edge(pydot.Edge(blob_node(bottom), node))
        for top in layer.top:
            graph.add_edge(pydot.Edge(node, blob_node(top), label=f'"{edge_label(layer)}"'))
    return graph


def draw_net(model, out, rankdir: str = "LR", phase: str = "ALL") -> Path:
    """Render the network in the prototxt `model` to `out`; the extension picks the format."""
    out = Path(out)
    fmt = out.suffix.lstrip(".").lower()
    if not fmt:
        raise MinicaffeError(f"{out}: give the output file an extension (.svg, .png, .pdf, .dot)")
    param = protoio.read_net_param(model)
    graph = net_graph(param, rankdir, phase)
    if fmt in ("dot", "gv"):
        out.write_text(graph.to_string())
        return out
    if shutil.which("dot") is None:
        raise MinicaffeError("Graphviz's `dot` program was not found on PATH; `minicaffe draw` needs it "
                             "to lay out the graph. Install Graphviz (Debian/Ubuntu: apt-get install "
                             "graphviz; macOS: brew install graphviz), or write .dot to get the graph "
                             "source only.")
    try:
        data = graph.create(prog="dot", format=fmt)
    except Exception as err:  # dot rejects unknown formats with its own message
        raise MinicaffeError(f"Graphviz could not write {out} (format {fmt!r}): "
                             f"{' '.join(str(err).split())}") from None
    out.write_bytes(data)
    return out


def run(args) -> int:
    path = draw_net(args.model, args.out, rankdir=args.rankdir, phase=args.phase)
    print(f"Drawing net to {path}")
    return 0


def register(verbs) -> None:
    """Add the `draw` verb to the `minicaffe` command's subparsers."""
    p = verbs.add_parser("draw", help="draw a network as a graph (Caffe's draw_net.py)")
    p.add_argument("model", help="the network prototxt")
    p.add_argument("out", help="the picture to write; its extension (svg, png, pdf, dot) picks the format")
    p.add_argument("--rankdir", "-rankdir", default="LR", type=str.upper, choices=("LR", "RL", "TB", "BT"),
                   help="the direction the graph flows (default: LR, left to right)")
    p.add_argument("--phase", "-phase", default="ALL", type=str.upper, choices=tuple(PHASES),
                   help="draw the layers of the TRAIN or TEST net, or ALL layers (default: ALL)")
    p.set_defaults(func=run)
