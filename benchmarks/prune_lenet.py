"""Prune a trained LeNet to 90% sparsity, fine-tune it 1000 iterations, report test accuracy.

The acceptance figure of docs/pruning.md: LeNet trained by Caffe's recipe
(examples/mnist/lenet_solver.prototxt, 10,000 iterations on the 10k shipped training
digits) is pruned by weight magnitude to 90% sparsity in its four learnable layers, then
fine-tuned for 1000 iterations with the pruned weights held at zero, and must lose at most
0.5 points of accuracy on the 10,000 official test digits. Reported: accuracy before
pruning, right after pruning, after fine-tuning; each layer's sparsity; the sizes of the
.caffemodel files, raw and gzipped (dense storage keeps the zeros, see docs/pruning.md).

The default is one global magnitude threshold (`--scope global`): 90% of the 430,500
weights of the four layers together, which leaves the small, sensitive conv1 mostly
intact. `--scope layer` prunes 90% of every layer instead, and loses more (see
docs/pruning.md for both). Fine-tuning uses Caffe's lenet_solver settings (batch 64,
momentum 0.9, weight decay 5e-4, the `inv` policy with gamma 1e-4 and power 0.75) except
`base_lr`: 0.001 by default, a tenth of the original, as Han et al. lower the rate for
retraining (the schedule restarts at iteration 0). The engine trains with
`minicaffe.pruning.attach`, so the pruned weights are 0 after every update; the script
checks that they still are at the end. Nothing here runs in CI: it takes a few minutes.

    python benchmarks/prune_lenet.py --weights lenet_iter_10000.caffemodel \\
        --train-lmdb mnist_train_lmdb --test-lmdb mnist_test_lmdb \\
        [--sparsity 0.9] [--scope global|layer] [--iters 1000] [--base-lr 0.001] \\
        [--engine numpy|opencl] [--out DIR] [--json results.json] [--wait SECONDS]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "1")  # our own lines only

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minicaffe import common, pruning  # noqa: E402
from minicaffe.proto import caffe_pb2  # noqa: E402
from minicaffe.protoio import read_net_param  # noqa: E402
from minicaffe.solvers import get_solver  # noqa: E402

LENET = ROOT / "examples/mnist/lenet_train_test.prototxt"
NOTES = Path("/work/notes/lenet")  # where the project's trained LeNet was made; override with flags


def wait_for(path: Path, seconds: float) -> None:
    """Poll until `path` exists (the net may still be training), at most `seconds`."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            sys.exit(f"prune_lenet: {path} does not exist (waited {seconds:.0f} s)")
        time.sleep(10)
    time.sleep(2)  # written atomically, but let a snapshot's solverstate land too


def make_solver(args):
    net = read_net_param(LENET)
    for layer in net.layer:
        if layer.type == "Data":
            test = any(rule.phase == caffe_pb2.TEST for rule in layer.include)
            layer.data_param.source = str(args.test_lmdb if test else args.train_lmdb)
    param = caffe_pb2.SolverParameter(
        test_iter=[100], test_interval=10**9, test_initialization=False,  # tested by hand below
        base_lr=args.base_lr, momentum=0.9, weight_decay=0.0005, lr_policy="inv", gamma=0.0001,
        power=0.75, display=0, max_iter=args.iters, snapshot=0, snapshot_after_train=False,
        random_seed=args.seed, weights=[str(args.weights)])
    param.net_param.CopyFrom(net)
    return get_solver(param)


def accuracy(solver) -> float:
    """Mean accuracy over the 100 test batches of 100: all 10,000 test digits."""
    solver.test(0)
    names = solver.test_nets[0].output_blob_names
    return float(solver.mean_scores[0][names.index("accuracy")])


def file_sizes(path: Path) -> dict:
    data = path.read_bytes()
    return {"bytes": len(data), "gzip_bytes": len(gzip.compress(data, 9))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=NOTES / "lenet_iter_10000.caffemodel")
    p.add_argument("--train-lmdb", type=Path, default=NOTES / "mnist_train_lmdb")
    p.add_argument("--test-lmdb", type=Path, default=NOTES / "mnist_test_lmdb")
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--scope", choices=pruning.SCOPES, default="global")
    p.add_argument("--iters", type=int, default=1000)
    p.add_argument("--base-lr", type=float, default=0.001)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--engine", choices=("numpy", "opencl"), default="numpy")
    p.add_argument("--out", type=Path, default=Path("/tmp/prune_lenet"))
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--wait", type=float, default=0, help="poll this long for --weights to appear")
    args = p.parse_args(argv)
    if args.wait:
        wait_for(args.weights, args.wait)
    common.set_mode(common.GPU if args.engine == "opencl" else common.CPU)
    args.out.mkdir(parents=True, exist_ok=True)

    solver = make_solver(args)
    dense = accuracy(solver)
    print(f"dense:      accuracy {100 * dense:.2f}%", flush=True)
    dense_file = args.out / "lenet_dense.caffemodel"
    solver.net.save(dense_file)

    masks = pruning.compute_masks(solver.net, args.sparsity, scope=args.scope)
    rows = pruning.report(solver.net, masks)
    pruning.attach(solver, masks, "computed masks")  # zeroes now, and after every update
    pruned = accuracy(solver)
    print(f"pruned:     accuracy {100 * pruned:.2f}%", flush=True)
    pruned_file = args.out / "lenet_pruned.caffemodel"
    solver.net.save(pruned_file)
    pruning.save_masks(args.out / "lenet_pruned.mask.h5", masks, args.sparsity, args.scope)

    start = time.perf_counter()
    solver.step(args.iters)
    seconds = time.perf_counter() - start
    tuned = accuracy(solver)
    print(f"fine-tuned: accuracy {100 * tuned:.2f}% after {args.iters} iterations ({seconds:.0f} s)",
          flush=True)
    tuned_file = args.out / "lenet_pruned_finetuned.caffemodel"
    solver.net.save(tuned_file)

    still_zero = all(not pruning.parameter(solver.net, k).cpu_data()[~m].any() for k, m in masks.items())
    layers = [{**r, "sparsity_after": pruning.sparsity_of(pruning.parameter(solver.net, f"{r['layer']}/{r['param']}").cpu_data())}
              for r in rows]
    result = {
        "weights": str(args.weights), "engine": args.engine, "scope": args.scope,
        "sparsity": args.sparsity, "iters": args.iters, "base_lr": args.base_lr, "seed": args.seed,
        "accuracy": {"dense": dense, "pruned": pruned, "finetuned": tuned},
        "loss_points": 100 * (dense - tuned), "pruned_weights_still_zero": still_zero,
        "finetune_seconds": seconds, "layers": layers,
        "files": {"dense": file_sizes(dense_file), "pruned_finetuned": file_sizes(tuned_file)},
    }
    print()
    print("| layer | weights | pruned | sparsity | threshold |")
    print("|---|---:|---:|---:|---:|")
    for r in layers:
        print(f"| {r['layer']} | {r['values']:,} | {r['pruned']:,} | {100 * r['sparsity']:.2f}% | "
              f"{r['threshold']:.4g} |")
    print()
    print(f"accuracy: dense {100 * dense:.2f}%, pruned {100 * pruned:.2f}%, fine-tuned {100 * tuned:.2f}% "
          f"(loss {result['loss_points']:+.2f} points; acceptance: at most 0.5)")
    print(f"pruned weights still exactly zero after fine-tuning: {still_zero}")
    for name, sizes in result["files"].items():
        print(f"{name}.caffemodel: {sizes['bytes']:,} bytes, gzip -9 {sizes['gzip_bytes']:,} bytes")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["loss_points"] <= 0.5 and still_zero else 1


if __name__ == "__main__":
    sys.exit(main())
