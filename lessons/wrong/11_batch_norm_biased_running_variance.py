"""Lesson 11, WRONG on purpose: the running variance sums the biased batch variance (no m / (m - 1))."""
import numpy as np

AXES = (0, 2, 3)


def per_channel(v):
    return v.reshape(1, -1, 1, 1)


def batch_norm_train(x, mean_sum, var_sum, count, fraction=0.999, eps=1e-5):
    mean = x.mean(axis=AXES)
    var = ((x - per_channel(mean)) ** 2).mean(axis=AXES)
    y = (x - per_channel(mean)) / np.sqrt(per_channel(var) + eps)
    return y, fraction * mean_sum + mean, fraction * var_sum + var, fraction * count + 1  # BUG


def batch_norm_test(x, mean_sum, var_sum, count, eps=1e-5):
    scale = 0.0 if count == 0 else 1.0 / count
    return (x - per_channel(mean_sum * scale)) / np.sqrt(per_channel(var_sum * scale) + eps)


def batch_norm_backward(dy, y, var, eps=1e-5):
    return (dy - dy.mean(axis=AXES, keepdims=True)
            - y * (dy * y).mean(axis=AXES, keepdims=True)) / np.sqrt(per_channel(var) + eps)
