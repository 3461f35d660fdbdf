"""Lesson 17: prune and fine-tune. Complete the five functions marked TODO.

Check your work:   python -m pytest lessons/17_prune_finetune
Try it:            python lessons/17_prune_finetune/exercise.py [lenet.caffemodel]

Without an argument the demo trains a small MLP (mlp.prototxt) on real MNIST digits for
a few seconds, prunes 90% of its weights and fine-tunes it. Given a trained LeNet
(`examples/mnist/train_lenet.sh` writes examples/mnist/lenet_iter_10000.caffemodel), it
prunes and fine-tunes LeNet instead (a minute or so on the numpy engine).
"""
import os
import sys
import time
from pathlib import Path

# Before numpy loads: these matrices are small, and a threaded BLAS only adds overhead.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("GLOG_minloglevel", "1")  # hide the INFO lines of net set-up

import numpy as np  # noqa: E402

from minicaffe import common  # noqa: E402
from minicaffe.io.idx import read_images, read_labels  # noqa: E402
from minicaffe.proto import caffe_pb2  # noqa: E402
from minicaffe.protoio import read_net_param  # noqa: E402
from minicaffe.solvers import get_solver  # noqa: E402

HERE = Path(__file__).resolve().parent
MNIST = HERE.parents[1] / "data" / "mnist"

# examples/mnist/lenet_solver.prototxt's hyper-parameters.
SOLVER = dict(base_lr=0.01, momentum=0.9, weight_decay=0.0005, lr_policy="inv",
              gamma=0.0001, power=0.75, display=0, max_iter=10000, snapshot=0, random_seed=1)


def load_digits(kind: str, count: int):
    """The first `count` digits of "train" (the 10k shipped training digits) or "test" (the
    official test set): (count, 1, 28, 28) float32 scaled by 1/256, labels as float32."""
    prefix = "train-10k" if kind == "train" else "t10k"
    pixels = read_images(MNIST / f"{prefix}-images-idx3-ubyte.gz")[:count]
    labels = read_labels(MNIST / f"{prefix}-labels-idx1-ubyte.gz")[:count]
    return (np.ascontiguousarray(pixels[:, None].astype(np.float32) * np.float32(1 / 256)),
            labels.astype(np.float32))


def accuracy(net, images: np.ndarray, labels: np.ndarray) -> float:
    """The share of `images` whose largest score (blob "ip2") is the label."""
    batch = net.blobs["data"].shape[0]
    correct = 0
    for start in range(0, len(images), batch):
        x = images[start:start + batch]
        padded = np.zeros(net.blobs["data"].shape, np.float32)
        padded[:len(x)] = x
        net.blobs["data"].data[...] = padded
        net.blobs["label"].data[...] = 0
        net.forward_loss()
        correct += int(np.sum(net.blobs["ip2"].data[:len(x)].argmax(axis=1) == labels[start:start + len(x)]))
    return correct / len(images)


def train_dense(images: np.ndarray, labels: np.ndarray, iterations: int):
    """mlp.prototxt trained by minicaffe's own SGDSolver (LeNet's solver settings)."""
    param = caffe_pb2.SolverParameter(**SOLVER)
    param.net_param.CopyFrom(read_net_param(HERE / "mlp.prototxt"))
    solver = get_solver(param)
    net = solver.net
    batch = net.blobs["data"].shape[0]
    for t in range(iterations):
        index = (t * batch + np.arange(batch)) % len(images)
        net.blobs["data"].data[...] = images[index]
        net.blobs["label"].data[...] = labels[index]
        solver.step(1)
    return net


def magnitude_mask(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """The mask that prunes the smallest-magnitude fraction `sparsity` of `weights`.

    Return a bool array of the shape of `weights`: True = kept, False = pruned. Prune
    exactly k = floor(sparsity * n + 0.5) of the n values (S n rounded, halves up): those of
    smallest |w|. Equal magnitudes are pruned in flat (C) order, first stored first, so the
    count is exact whatever the ties. Leave `weights` unchanged.
    """
    raise NotImplementedError("TODO: lesson 17, magnitude_mask")


def global_masks(weights: list[np.ndarray], sparsity: float) -> list[np.ndarray]:
    """One threshold for all the arrays: the smallest fraction `sparsity` of all their values
    together is pruned, wherever it is. Return one mask per array, in order (ties: the
    earlier array first, then flat order)."""
    raise NotImplementedError("TODO: lesson 17, global_masks")


def prune(net, sparsity: float) -> list[np.ndarray]:
    """Prune each weight blob of `net` (a blob of net.learnable_params with 2 axes or more)
    by its own magnitude_mask, setting its pruned values to 0 in blob.data. Biases (one
    axis) are not pruned: their mask is all True. Return the masks, one per blob of
    net.learnable_params, in that order."""
    raise NotImplementedError("TODO: lesson 17, prune")


def masked_sgd_update(w: np.ndarray, g: np.ndarray, history: np.ndarray, mask: np.ndarray,
                      rate: float, momentum: float, decay: float) -> None:
    """One SGD step on one parameter, in place, then the mask.

    Caffe's order (SGDSolver): the gradient g gets the L2 weight decay, decay * w; the
    history becomes momentum * history + rate * (that); w -= history. Then the pruned
    values of w (mask False) are set to exactly 0. `w` and `history` are updated in place;
    `g` may be used as scratch.
    """
    raise NotImplementedError("TODO: lesson 17, masked_sgd_update")


def finetune(net, masks: list[np.ndarray], images: np.ndarray, labels: np.ndarray, iterations: int,
             base_lr: float, momentum: float, weight_decay: float) -> list[float]:
    """Fine-tune `net` with a fixed rate, the pruned weights held at 0; return each loss.

    Iteration t reads items t*B .. t*B + B - 1 of `images` / `labels` (modulo their
    count; B = net.blobs["data"].shape[0]) into net.blobs["data"] and net.blobs["label"],
    clears the parameter diffs, runs net.forward_backward(), then updates every blob i of
    net.learnable_params with masked_sgd_update and masks[i], at Caffe's per-parameter
    rate base_lr * net.params_lr[i] and decay weight_decay * net.params_weight_decay[i].
    The momentum history starts at zero.
    """
    raise NotImplementedError("TODO: lesson 17, finetune")


if __name__ == "__main__":
    SPARSITY = 0.9
    train_x, train_y = load_digits("train", 6400)
    test_x, test_y = load_digits("test", 1000)
    with common.using_mode(common.CPU):
        start = time.perf_counter()
        if len(sys.argv) > 1:  # a trained LeNet
            from minicaffe.net import Net
            from minicaffe.testing.lenet import lenet_with_input_layer
            net = Net(lenet_with_input_layer(64))
            net.copy_trained_layers_from(sys.argv[1])
            what, tune = "LeNet", 100
        else:
            net, what, tune = train_dense(train_x, train_y, 1000), "the MLP", 200
        dense = accuracy(net, test_x, test_y)
        masks = prune(net, SPARSITY)
        pruned = accuracy(net, test_x, test_y)
        finetune(net, masks, train_x, train_y, tune, base_lr=0.01, momentum=0.9, weight_decay=0.0005)
        tuned = accuracy(net, test_x, test_y)
        zeros = sum(int(np.sum(~m)) for m in masks)
        total = sum(m.size for m, blob in zip(masks, net.learnable_params) if blob.data.ndim >= 2)
        print(f"{what}: {zeros:,} of {total:,} weights pruned ({100 * zeros / total:.1f}%)")
        print(f"test accuracy (1000 digits): dense {100 * dense:.1f}%, pruned {100 * pruned:.1f}%, "
              f"after {tune} iterations of fine-tuning {100 * tuned:.1f}% "
              f"({time.perf_counter() - start:.1f} s in all)")
