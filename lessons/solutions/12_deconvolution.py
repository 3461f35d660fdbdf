"""Lesson 12, reference solution: deconvolution as GEMM then col2im."""
import numpy as np


def col2im(col, channels, height, width, kernel, pad, stride):
    oh = (height + 2 * pad - kernel) // stride + 1
    ow = (width + 2 * pad - kernel) // stride + 1
    padded = np.zeros((channels, height + 2 * pad, width + 2 * pad), dtype=col.dtype)
    col = col.reshape(channels, kernel, kernel, oh, ow)
    for i in range(kernel):
        for j in range(kernel):
            # Entry (c, i, j) of every column came from row i + s u, column j + s v: add it back.
            padded[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride] += col[:, i, j]
    return padded[:, pad:pad + height, pad:pad + width]


def deconv_forward(x, w, b, pad, stride):
    n, c_in, h, width = x.shape
    c_out, kernel = w.shape[1], w.shape[2]
    oh, ow = stride * (h - 1) + kernel - 2 * pad, stride * (width - 1) + kernel - 2 * pad
    weights = w.reshape(c_in, c_out * kernel * kernel)
    y = np.empty((n, c_out, oh, ow), dtype=np.result_type(x, w))
    for image in range(n):
        cols = weights.T @ x[image].reshape(c_in, h * width)
        y[image] = col2im(cols, c_out, oh, ow, kernel, pad, stride) + b[:, None, None]
    return y
