"""Lesson 11, reference solution: BatchNorm."""
import numpy as np

AXES = (0, 2, 3)  # everything but the channel


def per_channel(v: np.ndarray) -> np.ndarray:
    """A (C,) vector shaped to broadcast against (N, C, H, W)."""
    return v.reshape(1, -1, 1, 1)


def batch_norm_train(x, mean_sum, var_sum, count, fraction=0.999, eps=1e-5):
    m = x.size // x.shape[1]
    mean = x.mean(axis=AXES)
    var = ((x - per_channel(mean)) ** 2).mean(axis=AXES)
    y = (x - per_channel(mean)) / np.sqrt(per_channel(var) + eps)
    unbiased = var * (m / (m - 1) if m > 1 else 1.0)
    return (y, fraction * mean_sum + mean, fraction * var_sum + unbiased, fraction * count + 1)


def batch_norm_test(x, mean_sum, var_sum, count, eps=1e-5):
    scale = 0.0 if count == 0 else 1.0 / count
    mean, var = mean_sum * scale, var_sum * scale
    return (x - per_channel(mean)) / np.sqrt(per_channel(var) + eps)


def batch_norm_backward(dy, y, var, eps=1e-5):
    return (dy - dy.mean(axis=AXES, keepdims=True)
            - y * (dy * y).mean(axis=AXES, keepdims=True)) / np.sqrt(per_channel(var) + eps)
