"""Lesson 10: training LeNet. Complete the two functions marked TODO.

Check your work:   python -m pytest lessons/10_training_lenet
Try it:            python lessons/10_training_lenet/exercise.py
"""
import time
from pathlib import Path

import numpy as np

from minicaffe.io.idx import read_images, read_labels
from minicaffe.protoio import read_solver_param
from minicaffe.solvers import get_solver

HERE = Path(__file__).resolve().parent
MNIST = HERE.parents[1] / "data" / "mnist"


def load_mnist(images: str, labels: str, count: int):
    """The first `count` digits of an IDX file pair: images (count, 1, 28, 28) scaled to
    [0, 1) as Caffe's transform_param { scale: 0.00390625 } does, and integer labels."""
    x = read_images(MNIST / images)[:count].astype(np.float32) * np.float32(1 / 256)
    return x[:, None], read_labels(MNIST / labels)[:count].astype(np.int64)


def make_solver():
    """An SGDSolver from lenet_solver.prototxt, whose net path is relative to this folder."""
    param = read_solver_param(HERE / "lenet_solver.prototxt")
    param.net = str(HERE / param.net)
    return get_solver(param)


def train(solver, images: np.ndarray, labels: np.ndarray, iterations: int) -> list[float]:
    """Run `iterations` SGD iterations; return the loss of each.

    The batch size B is the first dimension of solver.net.blobs["data"]. Iteration t
    uses the images (and labels) t*B .. t*B + B - 1, wrapping around at the end of the
    data. Each iteration: write the batch into net.blobs["data"].data and
    net.blobs["label"].data; net.clear_param_diffs(); loss = net.forward_backward();
    solver.apply_update(); solver.iter += 1.
    """
    raise NotImplementedError("TODO: lesson 10, train")


def accuracy(net, images: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of images whose highest score in net.blobs["ip2"] is the label.

    Run the net forward only (net.forward_loss()) on one batch of B images at a time;
    len(images) is a multiple of B.
    """
    raise NotImplementedError("TODO: lesson 10, accuracy")


if __name__ == "__main__":
    train_x, train_y = load_mnist("train-10k-images-idx3-ubyte.gz", "train-10k-labels-idx1-ubyte.gz", 6400)
    test_x, test_y = load_mnist("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 1024)
    solver = make_solver()
    print(f"accuracy before training: {accuracy(solver.net, test_x, test_y):.3f}")
    start = time.perf_counter()
    losses = train(solver, train_x, train_y, 100)
    print(f"100 iterations in {time.perf_counter() - start:.1f} s; loss {losses[0]:.3f} -> "
          f"{np.mean(losses[-10:]):.3f}")
    print(f"accuracy after training: {accuracy(solver.net, test_x, test_y):.3f}")
