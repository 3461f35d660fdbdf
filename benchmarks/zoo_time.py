"""Time Caffe's model-zoo deploy nets at batch 1 on the numpy engine, against their GEMM floor.

Each net (from `../shared/caffe_models`) is rebuilt with every input's batch size set to
1 and timed as `minicaffe time` does (Caffe's `caffe time`: TRAIN phase, forward then
backward, each layer's time summed). Its baseline, measured in the same run, is the
**GEMM floor**: the time numpy's BLAS takes for the matrix products of the net's
Convolution, Deconvolution and InnerProduct layers alone, shape for shape. The ratio
forward / floor says how much the rest (im2col, pooling, normalisation, Python) costs.
For reference the table also shows BVLC Caffe's CPU build on the same kind of 2-core
machine (`caffe time -iterations 10`, forward, as reported in the issue tracker; not
measured here).

    python benchmarks/zoo_time.py [--iterations 10] [--nets caffenet,googlenet,resnet50,squeezenet11]
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minicaffe.net import TRAIN, Net  # noqa: E402
from minicaffe.testing.zoo import at_batch_one  # noqa: E402
from minicaffe.tools.time import time_net  # noqa: E402

MODELS = ROOT.parent / "shared" / "caffe_models" / "models"
NETS = {  # name: (deploy prototxt, BVLC Caffe CPU forward ms at batch 1)
    "caffenet": ("bvlc_reference_caffenet/deploy.prototxt", 17.5),
    "googlenet": ("bvlc_googlenet/deploy.prototxt", 33.0),
    "resnet50": ("resnet/ResNet-50-deploy.prototxt", 50.9),
    "squeezenet11": ("squeezenet_v1.1/deploy.prototxt", 7.8),
}


def gemm_shapes(net: Net) -> list[tuple[int, int, int, int]]:
    """(groups, M, K, N) of each matrix product the net's GEMM layers do in forward."""
    shapes = []
    for record in net.layer_records:
        layer = record.layer
        if layer.type in ("Convolution", "Deconvolution"):
            group = layer.layer_param.convolution_param.group
            weight = layer.blobs[0].shape  # conv (K, C/g, kh, kw); deconv (C, K/g, kh, kw)
            small = record.bottom_vec if layer.type == "Deconvolution" else record.top_vec
            out = small[0].shape  # the side whose spatial size is the GEMM's N
            spatial = int(np.prod(out[2:]))
            rows = weight[0] // group
            shapes.append((group, rows, int(np.prod(weight[1:])), spatial))
        elif layer.type == "InnerProduct":
            weight = layer.blobs[0].shape
            batch = record.bottom_vec[0].count // weight[1]
            shapes.append((1, batch, weight[1], weight[0]))
    return shapes


def gemm_floor_ms(shapes, repeats: int = 5) -> float:
    """The least time over `repeats` of all the products, in ms."""
    rng = np.random.default_rng(0)
    operands = [(g, rng.random((m, k), np.float32), rng.random((k, n), np.float32))
                for g, m, k, n in shapes]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for groups, a, b in operands:
            for _ in range(groups):
                a @ b
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--nets", default=",".join(NETS))
    args = parser.parse_args(argv)
    logging.getLogger("minicaffe").setLevel(logging.WARNING)
    print(f"{'net':14} {'forward':>9} {'backward':>9} {'GEMM floor':>11} {'fwd/floor':>9} "
          f"{'Caffe fwd':>9}  slowest layers (forward)")
    for name in args.nets.split(","):
        path, caffe_ms = NETS[name]
        param = at_batch_one(MODELS / path)
        result = time_net(param, iterations=args.iterations)
        net = Net(param, TRAIN)
        floor = gemm_floor_ms(gemm_shapes(net))
        # Sum the per-layer times by layer type, to name the bottleneck.
        by_type: dict[str, float] = {}
        for record, ms in zip(net.layer_records, result["forward"]):
            by_type[record.layer.type] = by_type.get(record.layer.type, 0.0) + ms
        top = ", ".join(f"{t} {ms:.1f}" for t, ms in sorted(by_type.items(), key=lambda kv: -kv[1])[:4])
        print(f"{name:14} {result['forward_pass']:8.1f}  {result['backward_pass']:8.1f}  "
              f"{floor:10.1f}  {result['forward_pass'] / floor:8.2f}  {caffe_ms:8.1f}   {top}")


if __name__ == "__main__":
    main()
