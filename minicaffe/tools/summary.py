"""`minicaffe summary`: a table of a network's layers, their sizes and their cost.

    minicaffe summary --model examples/mnist/lenet_train_test.prototxt [--phase TEST] [--weights W]

The net is built as training or testing would build it (so Data layers open their
database and every shape is the real one, batch included), then each layer gets a row:

    layer  type  top shapes  parameters  FLOPs  activations  sparsity

* **parameters**: the values in the layer's learnable blobs (weights, biases). A blob
  shared with an earlier layer (a named `param`) is counted once, by its owner.
* **FLOPs** of one forward pass over the whole batch. Convolution and InnerProduct
  count 2 per multiply-add (one multiply, one add), biases left out: a top of `n`
  values, each a dot product of length `k`, costs `2 n k`; for a convolution
  `k` = (input channels / group) x kernel area. A Deconvolution is the same products
  run the other way: each bottom value meets (num_output / group) x kernel area
  weights, `2 n_bottom k`. Pooling counts one per window element
  read (`n` x kernel area). Layers that only move, share or load data (Data, Input,
  Split, Flatten, Reshape, Concat) count 0. Every other layer counts one per element
  of its first bottom: a rough figure for element-wise work (ReLU, Softmax, losses).
* **activations**: the bytes of float32 data in the tops the layer creates. A top that
  holds no data of its own creates nothing: an in-place top (ReLU writing over its
  bottom), and the tops of Split, Flatten and Reshape, which share their bottom's data.
  Training keeps a diff of the same size for most tops, so backward needs about twice
  this.
* **sparsity**: the share of the layer's weights that are exactly zero: its parameter
  blobs with two axes or more (filters, matrices), those that `minicaffe prune` prunes;
  "-" for a layer with none. A blob shared with an earlier layer counts for its owner,
  once. The total is over every weight of the net. Give `--weights` to see a trained or
  pruned net's; without it the values are the fillers' (all non-zero, for most).
"""
from __future__ import annotations

import numpy as np

from minicaffe.common import MinicaffeError
from minicaffe.tools import parse_stages

NO_FLOPS = {"Data", "Input", "Split", "Flatten", "Reshape", "Concat"}
BYTES_PER_VALUE = 4  # float32


def layer_flops(layer, bottom, top) -> int:
    """FLOPs of one forward pass of `layer`, by the convention in the module docstring."""
    if layer.type in ("Convolution", "InnerProduct"):
        num_output = (layer.layer_param.convolution_param.num_output if layer.type == "Convolution"
                      else layer.layer_param.inner_product_param.num_output)
        dot_length = layer.blobs[0].count // num_output
        return 2 * sum(t.count for t in top) * dot_length
    if layer.type == "Deconvolution":  # blob (C_in, num_output / group, k...): per bottom value
        return 2 * sum(b.count for b in bottom) * (layer.blobs[0].count // layer.blobs[0].shape[0])
    if layer.type == "Pooling":
        return top[0].count * layer.kernel_h * layer.kernel_w
    if layer.type in NO_FLOPS or not bottom:
        return 0
    return bottom[0].count


def summarize(model, phase: str = "TRAIN", level: int = 0, stages=(), weights=None) -> dict:
    """Rows {layer, type, top_shapes, params, flops, activation_bytes, sparsity} and totals.

    `sparsity` is None for a layer without weights of its own. `weights` (a .caffemodel)
    is loaded into the net first.
    """
    from minicaffe.net import TEST, TRAIN, Net
    from minicaffe.pruning import is_weight

    if phase not in ("TRAIN", "TEST"):
        raise MinicaffeError(f"--phase must be TRAIN or TEST, got {phase!r}")
    net = Net(model, TRAIN if phase == "TRAIN" else TEST, level=level, stages=stages)
    if weights:
        net.copy_trained_layers_from(weights)
    rows, seen_params, seen_data = [], set(), set()
    weight_zeros = weight_count = 0
    for record in net.layer_records:
        name, layer, bottom, top = record.name, record.layer, record.bottom_vec, record.top_vec
        params = zeros = weight_values = 0
        for blob in layer.blobs:
            # A shared parameter is a Blob sharing its owner's memory: count that memory once.
            if id(blob.data_mem) not in seen_params:
                seen_params.add(id(blob.data_mem))
                params += blob.count
                if is_weight(blob):
                    weight_values += blob.count
                    zeros += blob.count - int(np.count_nonzero(blob.cpu_data()))
        weight_zeros, weight_count = weight_zeros + zeros, weight_count + weight_values
        # A top whose data memory was met before (its bottom's, in place or shared) is no new memory.
        seen_data.update(id(b.data_mem) for b in bottom)
        new_tops = []
        for t in top:
            if id(t.data_mem) not in seen_data:
                seen_data.add(id(t.data_mem))
                new_tops.append(t)
        rows.append({"layer": name, "type": layer.type,
                     "top_shapes": [tuple(t.shape) for t in top], "params": params,
                     "flops": layer_flops(layer, bottom, top),
                     "activation_bytes": BYTES_PER_VALUE * sum(t.count for t in new_tops),
                     "sparsity": zeros / weight_values if weight_values else None})
    totals = {key: sum(r[key] for r in rows) for key in ("params", "flops", "activation_bytes")}
    totals["sparsity"] = weight_zeros / weight_count if weight_count else None
    return {"rows": rows, "totals": totals, "name": net.name, "phase": phase}


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _percent(fraction) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f}%"


def format_table(summary: dict) -> str:
    """The summary as a plain-text table, one row per layer and a total row."""
    header = ("layer", "type", "top shapes", "parameters", "FLOPs", "activations", "sparsity")
    lines = [header]
    for r in summary["rows"]:
        shapes = ", ".join("x".join(map(str, s)) or "scalar" for s in r["top_shapes"])
        lines.append((r["layer"], r["type"], shapes, f"{r['params']:,}", f"{r['flops']:,}",
                      _bytes(r["activation_bytes"]), _percent(r.get("sparsity"))))
    t = summary["totals"]
    lines.append(("total", "", "", f"{t['params']:,}", f"{t['flops']:,}", _bytes(t["activation_bytes"]),
                  _percent(t.get("sparsity"))))
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    right = {3, 4, 5, 6}  # numbers line up on the right

    def fmt(row):
        return "  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                         for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
    rule = "-" * len(fmt(header))
    title = f"Net {summary['name']!r}, phase {summary['phase']}"
    return "\n".join([title, fmt(header), rule, *map(fmt, lines[1:-1]), rule, fmt(lines[-1])])


def run(args) -> int:
    if not args.model:
        raise MinicaffeError("Need a model definition to summarize: give --model FILE.")
    stages = parse_stages(args.stage)
    print(format_table(summarize(args.model, args.phase, args.level, stages, args.weights)))
    return 0


def register(verbs) -> None:
    """Add the `summary` verb to the `minicaffe` command's subparsers."""
    p = verbs.add_parser("summary", help="tabulate a model's layers: shapes, parameters, FLOPs, memory")
    p.add_argument("--model", "-model", help="the model definition protocol buffer text file")
    p.add_argument("--phase", "-phase", default="TRAIN", type=str.upper, choices=("TRAIN", "TEST"),
                   help="the net's phase (default: TRAIN)")
    p.add_argument("--level", "-level", type=int, default=0, help="optional; the net's level")
    p.add_argument("--stage", "-stage", help="optional; the net's stages, separated by ','")
    p.add_argument("--weights", "-weights", help="optional; a .caffemodel to load, for the "
                                                 "sparsity of trained (or pruned) weights")
    p.set_defaults(func=run)
