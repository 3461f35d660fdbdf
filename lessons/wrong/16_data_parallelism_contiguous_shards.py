"""Lesson 16, WRONG on purpose: each rank takes a contiguous block of the items (rank 1
of 4 starts a quarter of the way in) instead of every N-th item, so an update mixes
items from far-apart parts of the data, not the next N * B items."""
import numpy as np


def shard(n_items: int, rank: int, size: int) -> np.ndarray:
    # Caffe's DataLayer::Skip: of the items read in order, rank r keeps item i if i % N == r.
    return np.array_split(np.arange(n_items), size)[rank]  # BUG: np.arange(rank, n_items, size)


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
    return loss, [blob.diff.copy() for blob in net.learnable_params]


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
