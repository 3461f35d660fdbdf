"""Distil a wide LeNet teacher into a student with a quarter of its parameters.

Knowledge distillation (Hinton, Vinyals & Dean 2015) on the MNIST digits that ship with
minicaffe (data/mnist), in three steps, all on the numpy engine:

1. Train the teacher (teacher_train.prototxt, 1,087,106 parameters) on the hard labels.
2. For each seed, train the student (274,758 parameters) twice from the same initial
   weights on the same shuffled batches: on the hard labels alone (student_train.prototxt,
   the baseline), and with the frozen teacher's softened scores (distill_train.prototxt:
   0.9 x DistillationLoss at T = 4 + 0.1 x SoftmaxWithLoss).
3. Score every net on the 10,000 official test digits and print a table: per seed, and
   the mean over seeds, of the baseline and the distilled student.

    OPENBLAS_NUM_THREADS=1 python examples/distillation/run_distillation.py \\
        [--seeds 1 2 3] [--teacher-iters 1500] [--student-iters 600] [--train-digits 10000]

`--train-digits N` trains every net (teacher too) on the first N of the 10,000 training
digits only (N a multiple of the batch size, 100), the regime where labels are few.
`--teacher-weights W` reuses a teacher trained before (skipping step 1). The teacher's
weights and a JSON of the figures go to --output (default examples/distillation/run/,
ignored by git). The exit status is 1 when the distilled student's mean is not above the
baseline's. docs/distillation.md reports runs of this script.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from google.protobuf import text_format  # noqa: E402

from minicaffe import common  # noqa: E402
from minicaffe.io.idx import read_idx  # noqa: E402
from minicaffe.net import TEST, Net  # noqa: E402
from minicaffe.proto import caffe_pb2  # noqa: E402
from minicaffe.solvers import get_solver  # noqa: E402

TEACHER, STUDENT, DISTILL = (HERE / f"{name}_train.prototxt" for name in ("teacher", "student", "distill"))
BATCH = 100  # the MemoryData batch size of the three nets

# Caffe's LeNet solver (examples/mnist/lenet_solver.prototxt) without its test and snapshot
# settings: SGD with momentum, weight decay, the `inv` learning-rate policy.
SOLVER = ('type: "SGD" base_lr: 0.01 momentum: 0.9 weight_decay: 0.0005 lr_policy: "inv" '
          'gamma: 0.0001 power: 0.75 display: 0 snapshot_after_train: false solver_mode: CPU')


def load_digits(train_digits: int):
    """(train images, train labels, test images, test labels): pixels scaled to [0, 1) as
    LeNet's transform_param scale 1/256 does, float32, images N x 1 x 28 x 28."""
    def images(name):
        return np.ascontiguousarray(read_idx(ROOT / "data/mnist" / name)[:, None], dtype=np.float32) / 256

    def labels(name):
        return read_idx(ROOT / "data/mnist" / name).astype(np.float32)

    x, y = images("train-10k-images-idx3-ubyte.gz"), labels("train-10k-labels-idx1-ubyte.gz")
    return (x[:train_digits], y[:train_digits],
            images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz"))


def train(net_path: Path, images, labels, iters: int, seed: int, teacher_weights=None):
    """A solver for `net_path` seeded with `seed`, trained `iters` iterations on the digits
    in an order shuffled by `seed`; the teacher's weights are copied in first if given."""
    param = text_format.Parse(SOLVER, caffe_pb2.SolverParameter())
    param.net, param.max_iter, param.random_seed = str(net_path), iters, seed
    solver = get_solver(param)
    if teacher_weights is not None:
        solver.net.copy_from(str(teacher_weights))
    order = np.random.default_rng(seed).permutation(len(images))
    x, y = np.ascontiguousarray(images[order]), labels[order]
    solver.net.set_input_arrays(x, y)  # the layer keeps the arrays: x, y live as long as solver
    solver.step(iters)
    return solver, (x, y)


def test_accuracy(net_path: Path, trained: Net, images, labels) -> float:
    """Accuracy of `trained`'s weights over every test digit, with the TEST phase of `net_path`."""
    net = Net(str(net_path), TEST)
    net.share_trained_layers_with(trained)
    net.set_input_arrays(images, labels)
    correct = 0.0
    for _ in range(len(images) // BATCH):
        net.forward()
        correct += float(net.blobs["accuracy"].data) * BATCH
    return correct / len(images)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--teacher-iters", type=int, default=1500)
    parser.add_argument("--student-iters", type=int, default=600)
    parser.add_argument("--train-digits", type=int, default=10000)
    parser.add_argument("--teacher-seed", type=int, default=1701)
    parser.add_argument("--teacher-weights", type=Path,
                        help="a teacher .caffemodel from an earlier run: skip step 1")
    parser.add_argument("--output", type=Path, default=HERE / "run")
    args = parser.parse_args(argv)
    if not 0 < args.train_digits <= 10000 or args.train_digits % BATCH:
        parser.error(f"--train-digits must be a multiple of {BATCH} in [{BATCH}, 10000]")
    logging.disable(logging.WARNING)  # the solvers' INFO and the copy_from notes
    common.set_mode(common.CPU)
    args.output.mkdir(parents=True, exist_ok=True)
    x_train, y_train, x_test, y_test = load_digits(args.train_digits)
    started = time.perf_counter()

    if args.teacher_weights:
        teacher_weights = args.teacher_weights
        teacher_acc = test_accuracy(TEACHER, Net(str(TEACHER), TEST, weights=str(teacher_weights)),
                                    x_test, y_test)
        print(f"teacher: {100 * teacher_acc:.2f}% test accuracy ({teacher_weights})", flush=True)
    else:
        teacher, _ = train(TEACHER, x_train, y_train, args.teacher_iters, args.teacher_seed)
        teacher_weights = args.output / "teacher.caffemodel"
        teacher.net.save(teacher_weights)
        teacher_acc = test_accuracy(TEACHER, teacher.net, x_test, y_test)
        print(f"teacher: {100 * teacher_acc:.2f}% test accuracy after {args.teacher_iters} iterations "
              f"({time.perf_counter() - started:.0f} s)", flush=True)

    rows = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        baseline, _ = train(STUDENT, x_train, y_train, args.student_iters, seed)
        base_acc = test_accuracy(STUDENT, baseline.net, x_test, y_test)
        t1 = time.perf_counter()
        distilled, _ = train(DISTILL, x_train, y_train, args.student_iters, seed, teacher_weights)
        dist_acc = test_accuracy(DISTILL, distilled.net, x_test, y_test)
        t2 = time.perf_counter()
        rows.append({"seed": seed, "baseline": base_acc, "distilled": dist_acc,
                     "baseline_s": t1 - t0, "distilled_s": t2 - t1})
        print(f"seed {seed}: baseline {100 * base_acc:.2f}%, distilled {100 * dist_acc:.2f}% "
              f"({100 * (dist_acc - base_acc):+.2f} points; {t1 - t0:.0f} s + {t2 - t1:.0f} s)", flush=True)

    base = np.array([r["baseline"] for r in rows])
    dist = np.array([r["distilled"] for r in rows])
    gain = dist - base
    print(f"mean over seeds {args.seeds}: baseline {100 * base.mean():.2f}%, distilled "
          f"{100 * dist.mean():.2f}% ({100 * gain.mean():+.2f} points; per seed "
          f"{', '.join(f'{100 * g:+.2f}' for g in gain)}); {time.perf_counter() - started:.0f} s in all")
    record = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "teacher": teacher_acc, "seeds": rows, "baseline_mean": base.mean(),
              "distilled_mean": dist.mean(), "seconds": time.perf_counter() - started}
    (args.output / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0 if gain.mean() > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
