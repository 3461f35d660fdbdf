"""int8 LeNet against float LeNet: test accuracy, weight bytes and time (docs/quantization.md).

    python benchmarks/quantize_lenet.py --weights lenet_iter_10000.caffemodel \
        [--train-lmdb DIR --test-lmdb DIR] [--calibration-batches 10] [--wait] [--gpu]

The weights are Caffe's LeNet example (examples/mnist/lenet_solver.prototxt, 10,000
iterations); the LMDBs default to mnist_train_lmdb / mnist_test_lmdb beside them.
Calibration reads the *training* LMDB (the TRAIN net, batch 64), so the test digits
never choose a range; a TEST-phase calibration (the CLI's default) is reported too.
Every accuracy is over the whole 10,000-digit test set (100 batches of 100).

Figures: float and int8 accuracy, and the ablations that show where the error comes
from (weights only, one scale per tensor, 1 / 10 / 100 calibration batches); the bytes
of the weights and of the files; seconds per test pass on numpy and, with --gpu, on the
OpenCL engine. `--wait` polls until the weights file exists (it may still be training).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from minicaffe import common  # noqa: E402
from minicaffe import quantize as Q  # noqa: E402
from minicaffe.net import TEST, TRAIN, Net  # noqa: E402
from minicaffe.protoio import read_net_param, write_text  # noqa: E402

TEST_BATCHES = 100  # x 100 digits: the whole test set


def prototxt(folder: Path, train_lmdb: Path, test_lmdb: Path) -> Path:
    net = read_net_param(ROOT / "examples/mnist/lenet_train_test.prototxt")
    for layer, source in zip([l for l in net.layer if l.type == "Data"], (train_lmdb, test_lmdb)):
        layer.data_param.source = str(source)
    path = folder / "lenet_train_test.prototxt"
    write_text(path, net)
    return path


def score(net) -> tuple[float, float]:
    """(accuracy over the test set, seconds per batch of 100)."""
    for layer in net.net.data_layers() if isinstance(net, Q.QuantizedNet) else net.data_layers():
        layer.set_batch_index(0)
    net.forward_loss()  # warm-up: kernels compiled, buffers made (the batch is scored below)
    for layer in net.net.data_layers() if isinstance(net, Q.QuantizedNet) else net.data_layers():
        layer.set_batch_index(0)
    correct, start = 0.0, time.perf_counter()
    for _ in range(TEST_BATCHES):
        net.forward_loss()
        correct += float(net.blobs["accuracy"].data)
    return correct / TEST_BATCHES, (time.perf_counter() - start) / TEST_BATCHES


def per_tensor(model: Q.QuantizedModel) -> Q.QuantizedModel:
    """The same model with one weight scale per layer (the largest), for comparison."""
    layers = []
    for q in model.layers:
        w = Q.dequantize(q.weight, q.weight_scale.reshape(-1, *[1] * (q.weight.ndim - 1)))
        s = Q.scale_for(np.abs(w).max())
        layers.append(Q.QuantizedLayer(q.name, q.type, Q.quantize(w, s), np.full(q.num_output, s, np.float32),
                                       q.bias, q.input_scale))
    return Q.QuantizedModel(model.net_name, layers)


def weights_only(model_path: Path, weights: Path, model: Q.QuantizedModel) -> Net:
    """The float net with its weights replaced by their int8 round trip (activations float)."""
    net = Net(model_path, TEST, weights=weights)
    for q in model.layers:
        w = Q.dequantize(q.weight, q.weight_scale.reshape(-1, *[1] * (q.weight.ndim - 1)))
        blob = net.params[q.name][0]
        blob.data[...] = w.T if net.layer_dict[q.name].type == "InnerProduct" and \
            net.layer_dict[q.name].transpose else w
    return net


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--train-lmdb", type=Path)
    parser.add_argument("--test-lmdb", type=Path)
    parser.add_argument("--calibration-batches", type=int, default=10)
    parser.add_argument("--wait", action="store_true", help="poll until --weights exists")
    parser.add_argument("--gpu", action="store_true", help="time the OpenCL engine too")
    args = parser.parse_args()
    while args.wait and not args.weights.exists():
        print(f"waiting for {args.weights} ...", flush=True)
        time.sleep(60)
    train_lmdb = args.train_lmdb or args.weights.parent / "mnist_train_lmdb"
    test_lmdb = args.test_lmdb or args.weights.parent / "mnist_test_lmdb"
    rows = []

    def report(what, accuracy, seconds=None):
        rows.append((what, accuracy, seconds))
        timing = f"  {seconds * 1e3:7.1f} ms/batch" if seconds is not None else ""
        print(f"{what:<58} {100 * accuracy:6.2f}%{timing}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_path = prototxt(tmp, train_lmdb, test_lmdb)
        with common.using_mode(common.CPU):
            float_acc, float_time = score(Net(model_path, TEST, weights=args.weights))
            report("float32, numpy", float_acc, float_time)

            start = time.perf_counter()
            calibration_net = Net(model_path, TRAIN, weights=args.weights)
            model = Q.quantize_net(calibration_net, args.calibration_batches, str(model_path), "TRAIN")
            calibrate_s = time.perf_counter() - start
            int8_acc, int8_time = score(Q.QuantizedNet(model_path, model))
            report(f"int8, numpy ({args.calibration_batches} train batches calibrate)", int8_acc, int8_time)

            report("ablation: int8 weights only, float activations",
                   score(weights_only(model_path, args.weights, model))[0])
            report("ablation: one weight scale per tensor", score(Q.QuantizedNet(model_path, per_tensor(model)))[0])
            for batches in (1, 100):
                other = Q.quantize_net(Net(model_path, TRAIN, weights=args.weights), batches)
                report(f"ablation: calibrated on {batches} train batch(es)",
                       score(Q.QuantizedNet(model_path, other))[0])
            test_model = Q.quantize_net(Net(model_path, TEST, weights=args.weights), args.calibration_batches)
            report(f"calibrated on {args.calibration_batches} TEST batches (the CLI default)",
                   score(Q.QuantizedNet(model_path, test_model))[0])
            ranges = {q.name: 127 * q.input_scale for q in model.layers}

        if args.gpu:
            with common.using_mode(common.GPU):
                report("float32, OpenCL", *score(Net(model_path, TEST, weights=args.weights)))
                report("int8, OpenCL", *score(Q.QuantizedNet(model_path, model)))

        out = tmp / "lenet_int8.h5"
        Q.save(model, out)
        size = model.weight_bytes()
        print(f"\ncalibration ({args.calibration_batches} batches) and quantization: {calibrate_s:.2f} s")
        print("input ranges (max |x|): " + ", ".join(f"{k} {v:.3f}" for k, v in ranges.items()))
        print(f"weights: float32 {size['float32']:,} bytes, int8 {size['int8']:,} bytes "
              f"(ratio {size['int8'] / size['float32']:.3f}); scales and biases {size['scales_and_biases']:,} bytes")
        print(f"files: {args.weights.name} {args.weights.stat().st_size:,} bytes, "
              f"lenet_int8.h5 {out.stat().st_size:,} bytes "
              f"(ratio {out.stat().st_size / args.weights.stat().st_size:.3f})")
        loss = 100 * (float_acc - int8_acc)
        print(f"accuracy lost: {loss:.2f} points (acceptance: at most 0.3)")
    return 0 if loss <= 0.3 else 1


if __name__ == "__main__":
    sys.exit(main())
