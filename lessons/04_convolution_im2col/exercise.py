"""Lesson 04: convolution as im2col + GEMM. Complete the two functions marked TODO.

Check your work:   python -m pytest lessons/04_convolution_im2col
Try it:            python lessons/04_convolution_im2col/exercise.py
"""
import numpy as np


def output_size(size: int, kernel: int, pad: int, stride: int) -> int:
    """Positions a kernel takes along one axis: floor((size + 2 pad - kernel) / stride) + 1."""
    return (size + 2 * pad - kernel) // stride + 1


def im2col(x: np.ndarray, kernel: int, pad: int, stride: int) -> np.ndarray:
    """Columns of one image x (C, H, W): shape (C * kernel * kernel, OH * OW).

    Row (c, i, j) in that order (c slowest), column (u, v) in that order; the entry is
    the padded image's pixel (c, u * stride + i, v * stride + j). Hint: pad with
    np.pad, then for each kernel offset (i, j) one strided slice gives that offset's
    pixel for every output position at once.
    """
    raise NotImplementedError("TODO: lesson 04, im2col")


def conv_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: int, stride: int) -> np.ndarray:
    """Convolve a batch x (N, C, H, W) with filters w (K, C, k, k) and bias b (K,).

    Returns (N, K, OH, OW): for each image, W (K, C k k) times its im2col matrix, plus b.
    """
    raise NotImplementedError("TODO: lesson 04, conv_forward")


if __name__ == "__main__":
    image = np.arange(9.0).reshape(1, 3, 3)
    print("im2col of a 3x3 image, 2x2 kernel:\n", im2col(image, 2, 0, 1))
    print("expected rows: [0 1 3 4] [1 2 4 5] [3 4 6 7] [4 5 7 8]")
    w = np.array([[[[-1.0, 1.0], [-1.0, 1.0]]]])  # a vertical-edge detector
    print("edges:\n", conv_forward(image[None], w, np.zeros(1), 0, 1)[0, 0], "(all 2: x grows by 1 per column)")
