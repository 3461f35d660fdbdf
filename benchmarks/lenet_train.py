"""Time LeNet training iterations (batch 64): minicaffe's engines against PyTorch.

Every engine trains the same network (examples/mnist/lenet_train_test.prototxt) with the
same solver (SGD, momentum 0.9, weight decay 5e-4, `inv` policy, biases at lr_mult 2) on
the same real MNIST batches held in memory, so the numbers compare the frameworks and
not the data loaders. One iteration = forward + backward + update. PyTorch is timed only
when it is importable; the ratio is minicaffe / PyTorch (below 1 means minicaffe is faster).

    python benchmarks/lenet_train.py [--iters 200] [--warmup 20] [--repeats 3] [--engines numpy,opencl]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from google.protobuf import text_format  # noqa: E402

from minicaffe import common  # noqa: E402
from minicaffe.io.idx import read_idx  # noqa: E402
from minicaffe.proto import caffe_pb2  # noqa: E402
from minicaffe.testing.lenet import lenet_with_input_layer  # noqa: E402

BATCH = 64


def load_batches(iters: int):
    images = read_idx(ROOT / "data/mnist/train-10k-images-idx3-ubyte.gz").astype(np.float32) / 256
    labels = read_idx(ROOT / "data/mnist/train-10k-labels-idx1-ubyte.gz").astype(np.float32)
    n = len(images) // BATCH
    return [(images[i * BATCH:(i + 1) * BATCH, None], labels[i * BATCH:(i + 1) * BATCH])
            for i in (k % n for k in range(iters))]


def solver_param(engine: str) -> caffe_pb2.SolverParameter:
    return text_format.Parse(
        'base_lr: 0.01 momentum: 0.9 weight_decay: 0.0005 lr_policy: "inv" gamma: 0.0001 '
        f'power: 0.75 max_iter: 100000 display: 0 random_seed: 1 snapshot_after_train: false '
        f'solver_mode: {"GPU" if engine == "opencl" else "CPU"}', caffe_pb2.SolverParameter())


def time_minicaffe(engine: str, batches, warmup: int, repeats: int) -> float:
    from minicaffe.solvers import get_solver
    param = solver_param(engine)
    param.net_param.CopyFrom(lenet_with_input_layer(BATCH))
    solver = get_solver(param)
    data, label = solver.net.blobs["data"], solver.net.blobs["label"]

    def run(chunk):
        for x, y in chunk:
            data.mutable_cpu_data()[...] = x
            label.mutable_cpu_data()[...] = y
            solver.step(1)
        float(solver.net.blobs["loss"].cpu_data())  # wait for the device

    run(batches[:warmup])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run(batches[warmup:])
        best = min(best, (time.perf_counter() - start) / (len(batches) - warmup))
    common.set_mode(common.CPU)
    return best * 1e3


def time_torch(batches, warmup: int, repeats: int) -> float | None:
    try:
        import torch
        from torch import nn
    except ImportError:
        return None
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2, 2), nn.Conv2d(20, 50, 5), nn.MaxPool2d(2, 2),
                        nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))
    weights = [p for n, p in net.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in net.named_parameters() if n.endswith("bias")]
    # Caffe's SGD: weight decay on every blob (decay_mult 1), biases at twice the rate.
    opt = torch.optim.SGD([{"params": weights, "lr": 0.01}, {"params": biases, "lr": 0.02}],
                          lr=0.01, momentum=0.9, weight_decay=5e-4)
    base = [g["lr"] for g in opt.param_groups]
    loss_fn = nn.CrossEntropyLoss()
    tensors = [(torch.from_numpy(x), torch.from_numpy(y).long()) for x, y in batches]
    it = [0]

    def run(chunk):
        for x, y in chunk:
            scale = (1 + 0.0001 * it[0]) ** -0.75
            for g, lr in zip(opt.param_groups, base):
                g["lr"] = lr * scale
            opt.zero_grad(set_to_none=False)
            loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()
            it[0] += 1

    run(tensors[:warmup])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run(tensors[warmup:])
        best = min(best, (time.perf_counter() - start) / (len(tensors) - warmup))
    return best * 1e3


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=200, help="timed iterations per repeat")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="report the best of this many repeats")
    parser.add_argument("--engines", default="numpy,opencl", help="comma-separated: numpy, opencl")
    args = parser.parse_args(argv)
    batches = load_batches(args.warmup + args.iters)

    results: dict[str, float] = {}
    for engine in args.engines.split(","):
        if engine == "opencl":
            from minicaffe import opencl
            if not getattr(opencl, "available", lambda: False)():
                print("opencl: no working OpenCL device, skipped")
                continue
        results[f"minicaffe {engine}"] = time_minicaffe(engine, batches, args.warmup, args.repeats)
    torch_ms = time_torch(batches, args.warmup, args.repeats)
    if torch_ms is not None:
        import torch
        results[f"pytorch {torch.__version__} cpu ({torch.get_num_threads()} threads)"] = torch_ms

    print(f"LeNet training, batch {BATCH}, best of {args.repeats} x {args.iters} iterations")
    for name, ms in results.items():
        ratio = f"   {ms / torch_ms:.2f}x pytorch" if torch_ms and not name.startswith("pytorch") else ""
        print(f"  {name:<40s} {ms:8.2f} ms/iter{ratio}")
    if torch_ms is None:
        print("  pytorch: not installed (pip install torch), no comparison")


if __name__ == "__main__":
    main()
