"""Lesson 05: max pooling, Caffe's way. Complete the two functions marked TODO.

Check your work:   python -m pytest lessons/05_pooling
Try it:            python lessons/05_pooling/exercise.py
"""
import numpy as np


def max_pool_forward(x: np.ndarray, kernel: int, stride: int):
    """Max pooling of x (N, C, H, W) with square windows, no padding.

    Output size per axis: ceil((H - kernel) / stride) + 1 (Caffe rounds up); window
    (u, v) covers rows u*stride .. min(u*stride + kernel, H) - 1, and columns alike.
    Returns (y, mask), both (N, C, OH, OW): the maxima, and for each the index
    h * W + w of the first maximum of its window in row-major order (as an integer array).
    """
    raise NotImplementedError("TODO: lesson 05, max_pool_forward")


def max_pool_backward(dy: np.ndarray, mask: np.ndarray, x_shape) -> np.ndarray:
    """dE/dx of shape x_shape: each dy value added to the pixel its mask names."""
    raise NotImplementedError("TODO: lesson 05, max_pool_backward")


if __name__ == "__main__":
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    y, mask = max_pool_forward(x, 2, 2)
    print("y =", y[0, 0].tolist(), "(expected [[5, 7], [13, 15]])")
    print("mask =", mask[0, 0].tolist(), "(expected [[5, 7], [13, 15]]: here index == value)")
    y, _ = max_pool_forward(np.ones((1, 1, 6, 6)), 3, 2)
    print("6x6, kernel 3, stride 2 ->", y.shape[2:], "(expected (3, 3): Caffe rounds up)")
    print("dx =\n", max_pool_backward(np.ones((1, 1, 2, 2)), np.array([[[[5, 7], [13, 15]]]]),
                                       (1, 1, 4, 4))[0, 0])
