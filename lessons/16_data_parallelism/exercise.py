"""Lesson 16: data parallelism, N ranks simulated in one process. Complete the five
functions marked TODO.

Check your work:   python -m pytest lessons/16_data_parallelism
Try it:            python lessons/16_data_parallelism/exercise.py

No MPI here: the "ranks" take turns on one net. That is enough to see why averaging
gradients over ranks is the same as training on a bigger batch; for training on real
processes, see `mpiexec -n 2 minicaffe train` and docs/parallel.md.
"""
import os
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


def load_digits(count: int):
    """The first `count` training digits, (count, 1, 28, 28) float32 scaled by 1/256 (Caffe's
    transform_param { scale: 0.00390625 }), and their labels as float32."""
    pixels = read_images(MNIST / "train-10k-images-idx3-ubyte.gz")[:count]
    labels = read_labels(MNIST / "train-10k-labels-idx1-ubyte.gz")[:count]
    return (np.ascontiguousarray(pixels[:, None].astype(np.float32) * np.float32(1 / 256)),
            labels.astype(np.float32))


def make_solver(batch: int, iter_size: int = 1):
    """An SGDSolver for mlp.prototxt with an Input layer of `batch` items."""
    net = read_net_param(HERE / "mlp.prototxt")
    for shape in net.layer[0].input_param.shape:  # data (B, 1, 28, 28) and label (B,)
        shape.dim[0] = batch
    param = caffe_pb2.SolverParameter(iter_size=iter_size, **SOLVER)
    param.net_param.CopyFrom(net)
    return get_solver(param)


def shard(n_items: int, rank: int, size: int) -> np.ndarray:
    """The indices of the items that rank `rank` of `size` ranks trains on, in order.

    Caffe's rule (DataLayer, multi-GPU): every rank reads the whole database in order and
    keeps item i only when i % size == rank. So shard(10, 1, 3) is [1, 4, 7].
    """
    raise NotImplementedError("TODO: lesson 16, shard")


def allreduce_mean(grads_per_rank: list[list[np.ndarray]]) -> list[np.ndarray]:
    """The mean over ranks of each parameter's gradient.

    grads_per_rank[r][p] is rank r's gradient of learnable parameter p. Return a new list
    whose p-th array is (sum over r of grads_per_rank[r][p]) * (1 / N), N ranks: an
    all-reduce sum followed by the 1/N scale, as Caffe's NCCL code does. Leave the inputs
    unchanged.
    """
    raise NotImplementedError("TODO: lesson 16, allreduce_mean")


def rank_gradients(net, images: np.ndarray, labels: np.ndarray) -> tuple[float, list[np.ndarray]]:
    """One rank's work: the loss and parameter gradients of the net on its batch.

    Write `images` into net.blobs["data"].data and `labels` into net.blobs["label"].data,
    net.clear_param_diffs(), loss = net.forward_backward(); return the loss and a copy of
    each blob's diff in net.learnable_params. (Copies: the simulated ranks share one net,
    and the next rank's backward pass writes into the same memory.)
    """
    raise NotImplementedError("TODO: lesson 16, rank_gradients")


def data_parallel_step(solver, batches: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """One synchronous data-parallel iteration; return the mean of the ranks' losses.

    batches[r] is rank r's (images, labels). All ranks hold the same weights, so one net
    (solver.net) can play each rank in turn: rank_gradients for every rank, allreduce_mean
    of their gradients, write the mean into the diff of each blob of net.learnable_params,
    then solver.apply_update() and solver.iter += 1, as every real rank would do.
    """
    raise NotImplementedError("TODO: lesson 16, data_parallel_step")


def train(solver, images: np.ndarray, labels: np.ndarray, size: int, iterations: int) -> list[float]:
    """Train with `size` simulated ranks for `iterations` iterations; return each loss.

    Rank r owns the items shard(len(images), r, size) and reads them in order, B at a time
    (B = solver.net.blobs["data"].shape[0]), wrapping around at the end of its shard:
    at iteration t its batch is its items t*B .. t*B + B - 1 (modulo the shard's length).
    Each iteration is one data_parallel_step.
    """
    raise NotImplementedError("TODO: lesson 16, train")


if __name__ == "__main__":
    RANKS, BATCH, ITERATIONS = 4, 16, 100
    images, labels = load_digits(RANKS * BATCH * 50)
    with common.using_mode(common.CPU):
        ranks = make_solver(BATCH)
        big = make_solver(RANKS * BATCH)  # one solver, a batch RANKS times larger
        for mine, theirs in zip(ranks.net.learnable_params, big.net.learnable_params):
            theirs.data[...] = mine.data  # the same start (Caffe broadcasts rank 0's weights)
        start = time.perf_counter()
        losses = train(ranks, images, labels, RANKS, ITERATIONS)
        print(f"{RANKS} ranks x batch {BATCH}: {ITERATIONS} iterations in "
              f"{time.perf_counter() - start:.1f} s, loss {losses[0]:.3f} -> {np.mean(losses[-10:]):.3f}")
        big_losses = train(big, images, labels, 1, ITERATIONS)  # one rank: plain SGD
        print(f"1 rank x batch {RANKS * BATCH}: loss {big_losses[0]:.3f} -> {np.mean(big_losses[-10:]):.3f}")
        difference = max(float(np.max(np.abs(a.data - b.data)))
                         for a, b in zip(ranks.net.learnable_params, big.net.learnable_params))
        print(f"largest difference between their weights: {difference:.2e}")
