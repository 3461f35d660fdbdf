"""`minicaffe export_onnx`: write a deploy net and its trained weights as an ONNX model.

    minicaffe export_onnx --model deploy.prototxt --weights W.caffemodel --output M.onnx

The net is built in the TEST phase (as `minicaffe test` builds it) and its weights are
copied in by layer name; see minicaffe.onnx_export for how each layer maps onto ONNX's
operators. `--weights` is required: a net without its weights computes on random
fillers, and an exported model would carry them silently. Layers that ONNX cannot
express are all named, with their types, in one error. The output is written
atomically (a temporary file, then a rename). Needs the optional extra:
`pip install 'minicaffe[onnx]'` (onnx, and onnxruntime to run the result).
"""
from __future__ import annotations

from minicaffe.common import MinicaffeError
from minicaffe.tools import parse_stages


def export_onnx(args) -> int:
    from minicaffe.onnx_export import export_onnx as export, require_onnx

    if not args.model:
        raise MinicaffeError("Need a model definition to export: give --model deploy.prototxt.")
    if not args.weights:
        raise MinicaffeError("Need the trained weights to export: give --weights FILE.caffemodel "
                             "(an exported model without them would compute on random fillers).")
    if not args.output:
        raise MinicaffeError("Need a file to write: give --output M.onnx.")
    require_onnx()  # before the net is built: a missing package is the first thing to say
    stages = parse_stages(args.stage)
    export(args.model, args.weights, args.output, level=args.level, stages=stages)
    return 0


def register(verbs) -> None:
    """Add the export_onnx verb to the `minicaffe` command's subparsers."""
    help_text = "export a deploy net and its trained weights as an ONNX model"
    p = verbs.add_parser("export_onnx", help=help_text, description=help_text + ".")
    for flag, text in (("model", "the deploy net's prototxt (built in the TEST phase)"),
                       ("weights", "the trained .caffemodel (or .caffemodel.h5)"),
                       ("output", "the .onnx file to write")):
        p.add_argument(f"--{flag}", f"-{flag}", help=text)
    p.add_argument("--level", "-level", type=int, default=0, help="optional; the net's level")
    p.add_argument("--stage", "-stage", help="optional; the net's stages, separated by ','")
    p.set_defaults(func=export_onnx)
