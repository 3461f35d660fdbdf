"""Lesson 04, WRONG on purpose: im2col orders its rows (i, j, c) instead of (c, i, j)."""
import numpy as np


def output_size(size: int, kernel: int, pad: int, stride: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def im2col(x: np.ndarray, kernel: int, pad: int, stride: int) -> np.ndarray:
    c, h, w = x.shape
    oh, ow = output_size(h, kernel, pad, stride), output_size(w, kernel, pad, stride)
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    col = np.empty((kernel, kernel, c, oh, ow), dtype=x.dtype)  # BUG: (c, kernel, kernel, ...)
    for i in range(kernel):
        for j in range(kernel):
            # Pixel (i, j) of every window: rows i, i + s, ..., columns j, j + s, ...
            col[i, j] = xp[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
    return col.reshape(c * kernel * kernel, oh * ow)


def conv_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: int, stride: int) -> np.ndarray:
    n, _, h, width = x.shape
    k, kernel = w.shape[0], w.shape[2]
    oh, ow = output_size(h, kernel, pad, stride), output_size(width, kernel, pad, stride)
    weights = w.reshape(k, -1)
    y = np.empty((n, k, oh * ow), dtype=np.result_type(x, w))
    for image in range(n):
        y[image] = weights @ im2col(x[image], kernel, pad, stride) + b[:, None]
    return y.reshape(n, k, oh, ow)
