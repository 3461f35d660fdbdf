"""Lesson 12: deconvolution, convolution's transpose. Complete the two functions marked TODO.

Check your work:   python -m pytest lessons/12_deconvolution
Try it:            python lessons/12_deconvolution/exercise.py
"""
import numpy as np


def col2im(col: np.ndarray, channels: int, height: int, width: int, kernel: int, pad: int,
           stride: int) -> np.ndarray:
    """The adjoint of lesson 04's im2col: col is (channels * kernel * kernel, OH * OW) with
    OH = (height + 2 pad - kernel) // stride + 1 (OW alike), rows in (channel, i, j) order.
    Return the (channels, height, width) image where each entry of col is ADDED to the
    pixel it was read from; entries that fall in the padding are dropped."""
    raise NotImplementedError("TODO: lesson 12, col2im")


def deconv_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: int, stride: int) -> np.ndarray:
    """Deconvolution of x (N, C_in, H, W) with weights w (C_in, C_out, k, k) and bias b (C_out,).

    Output (N, C_out, OH, OW) with OH = stride * (H - 1) + k - 2 pad (OW alike): per image,
    cols = W^T x (W as a C_in x (C_out k k) matrix, x as C_in x (H W)), then col2im, plus b.
    """
    raise NotImplementedError("TODO: lesson 12, deconv_forward")


if __name__ == "__main__":
    # One pixel of value 2 stamps twice the kernel.
    kernel = np.arange(9.0).reshape(1, 1, 3, 3)
    print(deconv_forward(np.array([[[[2.0]]]]), kernel, np.zeros(1), 0, 1)[0, 0])
    # Two pixels, stride 2: two stamps that overlap in one column.
    print(deconv_forward(np.array([[[[1.0, 1.0]]]]), np.ones((1, 1, 3, 3)), np.zeros(1), 0, 2)[0, 0])
