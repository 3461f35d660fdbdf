"""Lesson 10, reference solution: training LeNet."""
import numpy as np


def train(solver, images: np.ndarray, labels: np.ndarray, iterations: int) -> list[float]:
    net = solver.net
    batch = net.blobs["data"].shape[0]
    losses = []
    for t in range(iterations):
        index = (t * batch + np.arange(batch)) % len(images)
        net.blobs["data"].data[...] = images[index]
        net.blobs["label"].data[...] = labels[index]
        net.clear_param_diffs()  # layers add their gradients: start from zero
        losses.append(net.forward_backward())
        solver.apply_update()
        solver.iter += 1
    return losses


def accuracy(net, images: np.ndarray, labels: np.ndarray) -> float:
    batch = net.blobs["data"].shape[0]
    right = 0
    for start in range(0, len(images), batch):
        net.blobs["data"].data[...] = images[start:start + batch]
        net.blobs["label"].data[...] = labels[start:start + batch]
        net.forward_loss()
        predicted = net.blobs["ip2"].data.argmax(axis=1)
        right += int(np.sum(predicted == labels[start:start + batch]))
    return right / len(images)
