"""Lesson 11: BatchNorm. Complete the three functions marked TODO.

x is (N, C, H, W); every statistic is per channel (axis 1), over N, H and W.

Check your work:   python -m pytest lessons/11_batch_norm
Try it:            python lessons/11_batch_norm/exercise.py
"""
import numpy as np


def per_channel(v: np.ndarray) -> np.ndarray:
    """A (C,) vector shaped to broadcast against (N, C, H, W): given, use it."""
    return v.reshape(1, -1, 1, 1)


def batch_norm_train(x: np.ndarray, mean_sum: np.ndarray, var_sum: np.ndarray, count: float,
                     fraction: float = 0.999, eps: float = 1e-5):
    """TRAIN phase: normalise x with its own batch statistics.

    Returns (y, mean_sum, var_sum, count), the running sums updated as Caffe does:
    sums and count decay by `fraction`, then mean_sum gains the batch mean, var_sum the
    batch variance times m / (m - 1) (m = values per channel), and count gains 1.
    y uses the biased batch variance: (x - mean) / sqrt(var + eps).
    """
    raise NotImplementedError("TODO: lesson 11, batch_norm_train")


def batch_norm_test(x: np.ndarray, mean_sum: np.ndarray, var_sum: np.ndarray, count: float,
                    eps: float = 1e-5) -> np.ndarray:
    """TEST phase: normalise x with the running statistics mean_sum / count and
    var_sum / count (both 0 while count is 0)."""
    raise NotImplementedError("TODO: lesson 11, batch_norm_test")


def batch_norm_backward(dy: np.ndarray, y: np.ndarray, var: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """dE/dx in the TRAIN phase, from dE/dy, the output y and the channels' biased batch
    variance `var` (shape (C,)):  (dy - <dy> - y <dy y>) / sqrt(var + eps),
    where <.> is the mean over N, H and W."""
    raise NotImplementedError("TODO: lesson 11, batch_norm_backward")


if __name__ == "__main__":
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 2, 2)
    y, mean_sum, var_sum, count = batch_norm_train(x, np.zeros(1), np.zeros(1), 0.0, eps=0.0)
    print("y =", y.ravel().round(4), "(expected [-1.3416 -0.4472 0.4472 1.3416])")
    print("running:", mean_sum, var_sum, count, "(expected [2.5] [1.6667] 1.0)")
    print("test:", batch_norm_test(x, mean_sum, var_sum, count, eps=0.0).ravel().round(4))
