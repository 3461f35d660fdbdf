"""`minicaffe prune`: zero a trained net's smallest weights and write the mask that keeps them zero.

    minicaffe prune --model lenet.prototxt --weights lenet_iter_10000.caffemodel --sparsity 0.9 \\
                    [--layers conv1,ip1] [--global] [--include-biases] \\
                    --output lenet_pruned.caffemodel [--mask lenet_pruned.mask.h5]
    minicaffe train --solver lenet_solver.prototxt --weights lenet_pruned.caffemodel \\
                    --prune-mask lenet_pruned.mask.h5

The net is built from `--model` in the TEST phase (a deploy net is enough) and loaded
with `--weights`; the `--sparsity` fraction of each selected weight blob is set to zero
by magnitude (or, with `--global`, that fraction of all of them together, one threshold
for all). By default every weight (every parameter with two axes or more) is pruned and
no bias; `--layers` names the layers to prune. The pruned weights are written to
`--output` (a `.caffemodel`, or a `.caffemodel.h5` by its suffix) and the mask to `--mask`
(default: the output's name with `.mask.h5` for its suffix); both atomically. A table of
what was pruned, per parameter, goes to stdout. The method and the file format are in
`minicaffe.pruning`; `minicaffe train --prune-mask` keeps the pruned weights at zero
while fine-tuning, and `minicaffe summary --weights` shows each layer's sparsity.
"""
from __future__ import annotations

import logging

from minicaffe import pruning
from minicaffe.common import MinicaffeError

log = logging.getLogger(__name__)


def default_mask_path(output: str) -> str:
    """`x.caffemodel` or `x.caffemodel.h5` -> `x.mask.h5`."""
    for suffix in (".caffemodel.h5", ".caffemodel", ".h5"):
        if output.endswith(suffix):
            return output[: -len(suffix)] + ".mask.h5"
    return output + ".mask.h5"


def parse_layers(flag: str | None) -> list[str] | None:
    if flag is None:
        return None
    names = [name.strip() for name in flag.split(",") if name.strip()]
    if not names:
        raise MinicaffeError(f"--layers takes layer names separated by ',', got {flag!r}")
    return names


def format_report(rows: list[dict], scope: str) -> str:
    header = ("layer", "param", "values", "pruned", "sparsity", "threshold")
    lines = [header]
    for r in rows:
        threshold = "-" if r["threshold"] is None else f"{r['threshold']:.6g}"
        lines.append((r["layer"], str(r["param"]), f"{r['values']:,}", f"{r['pruned']:,}",
                      f"{100 * r['sparsity']:.2f}%", threshold))
    values, pruned = sum(r["values"] for r in rows), sum(r["pruned"] for r in rows)
    lines.append(("total", "", f"{values:,}", f"{pruned:,}", f"{100 * pruned / values:.2f}%", ""))
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]

    def fmt(row):
        return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                         for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
    rule = "-" * len(fmt(header))
    title = f"Pruned by magnitude, {'one global threshold' if scope == 'global' else 'per layer'}"
    return "\n".join([title, fmt(header), rule, *map(fmt, lines[1:-1]), rule, fmt(lines[-1])])


def run(args) -> int:
    from minicaffe.io import hdf5
    from minicaffe.net import TEST, Net

    for flag in ("model", "weights", "output"):
        if not getattr(args, flag):
            raise MinicaffeError(f"`minicaffe prune` needs --{flag}")
    if args.sparsity is None:
        raise MinicaffeError("`minicaffe prune` needs --sparsity, the fraction of weights to zero "
                             "(e.g. 0.9)")
    sparsity = pruning.check_sparsity(args.sparsity)
    layers = parse_layers(args.layers)
    scope = "global" if args.global_threshold else "layer"
    mask_path = args.mask or default_mask_path(args.output)
    if mask_path == args.output:
        raise MinicaffeError(f"--mask and --output are the same file ({mask_path}); give two names")

    net = Net(args.model, TEST)
    net.copy_trained_layers_from(args.weights)
    masks = pruning.compute_masks(net, sparsity, layers, scope, args.include_biases)
    rows = pruning.report(net, masks)  # thresholds read before the weights are zeroed
    pruning.apply_masks(net, masks)
    if hdf5.is_hdf5(args.output):
        net.save_hdf5(args.output)
    else:
        net.save(args.output)
    pruning.save_masks(mask_path, masks, sparsity, scope)
    log.info("Wrote the pruned weights to %s and the mask to %s", args.output, mask_path)
    print(format_report(rows, scope))
    return 0


def register(verbs) -> None:
    """Add the `prune` verb to the `minicaffe` command's subparsers."""
    p = verbs.add_parser("prune", help="zero the smallest-magnitude weights of a trained net "
                                       "and write the mask that keeps them zero in fine-tuning")
    p.add_argument("--model", "-model", help="the model definition (a deploy net is enough)")
    p.add_argument("--weights", "-weights", help="the trained .caffemodel to prune")
    p.add_argument("--sparsity", "-sparsity", help="the fraction of weights to zero, in [0, 1): "
                                                   "0.9 prunes 90%%")
    p.add_argument("--layers", "-layers", help="optional; the layers to prune, separated by ',' "
                                               "(default: every layer with weights)")
    p.add_argument("--global", "-global", dest="global_threshold", action="store_true",
                   help="one magnitude threshold over all selected weights, instead of the same "
                        "sparsity in each layer")
    p.add_argument("--include-biases", "-include-biases", dest="include_biases", action="store_true",
                   help="prune the one-axis parameters (biases) too")
    p.add_argument("--output", "-output", help="where to write the pruned weights (.caffemodel, "
                                               "or .caffemodel.h5)")
    p.add_argument("--mask", "-mask", help="where to write the mask (default: the output's name "
                                           "with .mask.h5)")
    p.set_defaults(func=run)
