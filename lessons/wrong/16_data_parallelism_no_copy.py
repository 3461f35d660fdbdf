"""Lesson 16, WRONG on purpose: rank_gradients returns the net's diff arrays themselves,
not copies; the simulated ranks share one net, so the next rank's backward pass
overwrites them and the "mean" is the last rank's gradient N times over."""
import numpy as np


def shard(n_items: int, rank: int, size: int) -> np.ndarray:
    # Caffe's DataLayer::Skip: of the items read in order, rank r keeps item i if i % N == r.
    return np.arange(rank, n_items, size)


def allreduce_mean(grads_per_rank: list[list[np.ndarray]]) -> list[np.ndarray]:
    size = len(grads_per_rank)
    means = []
    for blobs in zip(*grads_per_rank):  # one parameter blob, as every rank computed it
        total = np.zeros_like(blobs[0])
        for g in blobs:
            total += g                          # the all-reduce: a sum over ranks...
        means.append(total * np.float32(1 / size))  # ...then 1/N, as Caffe's NCCL does
    return means


def rank_gradients(net, images: np.ndarray, labels: np.ndarray) -> tuple[float, list[np.ndarray]]:
    net.blobs["data"].data[...] = images
    net.blobs["label"].data[...] = labels
    net.clear_param_diffs()  # layers add their gradients: start from zero
    loss = net.forward_backward()
    # Copies: the next rank's backward pass writes into the same diff memory.
    return loss, [blob.diff for blob in net.learnable_params]  # BUG: blob.diff.copy()


def data_parallel_step(solver, batches: list[tuple[np.ndarray, np.ndarray]]) -> float:
    net = solver.net
    losses, grads = [], []
    for images, labels in batches:  # rank r's batch; every rank has the same weights
        loss, g = rank_gradients(net, images, labels)
        losses.append(loss)
        grads.append(g)
    for blob, mean in zip(net.learnable_params, allreduce_mean(grads)):
        blob.diff[...] = mean
    solver.apply_update()
    solver.iter += 1
    return float(np.mean(losses))


def train(solver, images: np.ndarray, labels: np.ndarray, size: int, iterations: int) -> list[float]:
    batch = solver.net.blobs["data"].shape[0]
    shards = [shard(len(images), rank, size) for rank in range(size)]
    losses = []
    for t in range(iterations):
        batches = []
        for mine in shards:  # each rank reads its own items, B at a time, wrapping around
            index = mine[(t * batch + np.arange(batch)) % len(mine)]
            batches.append((images[index], labels[index]))
        losses.append(data_parallel_step(solver, batches))
    return losses
