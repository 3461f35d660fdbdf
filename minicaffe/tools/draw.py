"""`minicaffe draw`: a picture of a network (Caffe's `python/draw_net.py`).

    minicaffe draw examples/mnist/lenet_train_test.prototxt lenet.svg [--rankdir LR] [--phase TRAIN]

The drawing is Caffe's, made by `minicaffe.draw` (pycaffe's `caffe.draw`): every layer
is a box labelled with its name, type and the parameters that set its output size
(kernel, stride, pad; `num_output` on the edges), every blob an octagon, and an edge
runs from each bottom blob to the layer and from the layer to each top blob. An
in-place layer (ReLU with top == bottom) therefore draws as a loop on its blob, as in
Caffe. `--phase` keeps the layers a net of that phase would have (include/exclude
rules); the default, ALL, draws every layer of the file. `--display_lrm` adds the
learning-rate multipliers of the layers that learn.

pydot writes the graph in Graphviz's DOT language; Graphviz's `dot` program lays it out
and renders it. The format is the output file's extension (svg, png, pdf, ...); `.dot`
is the graph's source, written without Graphviz.
"""
from __future__ import annotations

from pathlib import Path

from minicaffe import draw, protoio
from minicaffe.common import MinicaffeError


def draw_net(model, out, rankdir: str = "LR", phase: str = "ALL", display_lrm: bool = False) -> Path:
    """Draw the network in the prototxt `model` to `out`; the extension picks the format."""
    out = Path(out)
    if not out.suffix.lstrip("."):
        raise MinicaffeError(f"{out}: give the output file an extension (.svg, .png, .pdf, .dot)")
    draw.draw_net_to_file(protoio.read_net_param(model), out, rankdir, phase, display_lrm)
    return out


def run(args) -> int:
    path = draw_net(args.model, args.out, rankdir=args.rankdir, phase=args.phase,
                    display_lrm=args.display_lrm)
    print(f"Drawing net to {path}")
    return 0


def register(verbs) -> None:
    """Add the `draw` verb to the `minicaffe` command's subparsers."""
    p = verbs.add_parser("draw", help="draw a network as a graph (Caffe's draw_net.py)")
    p.add_argument("model", help="the network prototxt")
    p.add_argument("out", help="the picture to write; its extension (svg, png, pdf, dot) picks the format")
    p.add_argument("--rankdir", "-rankdir", default="LR", type=str.upper, choices=draw.RANKDIRS,
                   help="the direction the graph flows (default: LR, left to right)")
    p.add_argument("--phase", "-phase", default="ALL", type=str.upper, choices=tuple(draw.PHASES),
                   help="draw the layers of the TRAIN or TEST net, or ALL layers (default: ALL)")
    p.add_argument("--display_lrm", "-display_lrm", action="store_true",
                   help="show the learning-rate multipliers of the layers that learn")
    p.set_defaults(func=run)
