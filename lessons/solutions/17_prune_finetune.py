"""Lesson 17, reference solution: magnitude pruning and fine-tuning with a mask."""
import numpy as np


def magnitude_mask(weights: np.ndarray, sparsity: float) -> np.ndarray:
    k = int(np.floor(sparsity * weights.size + 0.5))  # S n, rounded half up
    # A stable sort: equal magnitudes keep their flat order, so ties go first-stored first.
    order = np.argsort(np.abs(weights), axis=None, kind="stable")
    kept = np.ones(weights.size, dtype=bool)
    kept[order[:k]] = False
    return kept.reshape(weights.shape)


def global_masks(weights: list[np.ndarray], sparsity: float) -> list[np.ndarray]:
    # One threshold for all: rank every weight of every array together.
    kept = magnitude_mask(np.concatenate([w.ravel() for w in weights]), sparsity)
    masks, start = [], 0
    for w in weights:
        masks.append(kept[start:start + w.size].reshape(w.shape))
        start += w.size
    return masks


def prune(net, sparsity: float) -> list[np.ndarray]:
    masks = []
    for blob in net.learnable_params:
        if blob.data.ndim >= 2:  # a weight matrix or filter bank
            mask = magnitude_mask(blob.data, sparsity)
            blob.data[~mask] = 0
        else:                    # a bias: kept whole
            mask = np.ones(blob.data.shape, dtype=bool)
        masks.append(mask)
    return masks


def masked_sgd_update(w: np.ndarray, g: np.ndarray, history: np.ndarray, mask: np.ndarray,
                      rate: float, momentum: float, decay: float) -> None:
    step = g + np.float32(decay) * w                       # L2 weight decay joins the gradient
    history[...] = np.float32(momentum) * history + np.float32(rate) * step
    w -= history                                           # Caffe's update: w -= v
    w *= mask                                              # after the update: pruned stay 0


def finetune(net, masks: list[np.ndarray], images: np.ndarray, labels: np.ndarray, iterations: int,
             base_lr: float, momentum: float, weight_decay: float) -> list[float]:
    batch = net.blobs["data"].shape[0]
    history = [np.zeros_like(blob.data) for blob in net.learnable_params]
    losses = []
    for t in range(iterations):
        index = (t * batch + np.arange(batch)) % len(images)  # batches in order, wrapping around
        net.blobs["data"].data[...] = images[index]
        net.blobs["label"].data[...] = labels[index]
        net.clear_param_diffs()
        losses.append(net.forward_backward())
        for i, blob in enumerate(net.learnable_params):
            masked_sgd_update(blob.data, blob.diff, history[i], masks[i],
                              base_lr * net.params_lr[i], momentum,
                              weight_decay * net.params_weight_decay[i])
    return losses
