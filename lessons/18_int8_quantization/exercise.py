"""Lesson 18: quantize an inner product to int8, and see where the error comes from.
Complete the five functions marked TODO.

Check your work:   python -m pytest lessons/18_int8_quantization
Try it:            python lessons/18_int8_quantization/exercise.py

Conventions (minicaffe/quantize.py's): symmetric int8, q in [-127, 127]; weights w are
(num_output, K), one scale per output channel (row); inputs x are (N, K), one scale for
all of them; y = x wᵀ + b is (N, num_output). Everything float is float32.
"""
import os
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: threads only add overhead

import numpy as np  # noqa: E402

from minicaffe.io.idx import read_images, read_labels  # noqa: E402

MNIST = Path(__file__).resolve().parents[2] / "data" / "mnist"


def quantize(x: np.ndarray, scale) -> np.ndarray:
    """q = clip(round(x / s), -127, 127) as int8; `scale` broadcasts against x.

    Round half to even (np.rint). Compute x * (1 / s), with 1 / s taken in float32
    (np.float32(1) / scale), as minicaffe does (README: why not x / s). Clip before
    casting to int8: a cast does not saturate, 200 would become -56.
    """
    raise NotImplementedError("TODO: lesson 18, quantize")


def dequantize(q: np.ndarray, scale) -> np.ndarray:
    """x̂ = s q, as float32."""
    raise NotImplementedError("TODO: lesson 18, dequantize")


def channel_scales(w: np.ndarray) -> np.ndarray:
    """s_w[c] = max |w[c]| / 127 for each output channel c (axis 0), float32, shape (C,).

    A channel of zeros gets scale 1 (any scale quantizes it to zeros; 0 would divide by 0).
    """
    raise NotImplementedError("TODO: lesson 18, channel_scales")


def int8_accumulate(xq: np.ndarray, wq: np.ndarray) -> np.ndarray:
    """The exact int32 sums acc[n, c] = sum_k xq[n, k] wq[c, k] of int8 xq (N, K), wq (C, K).

    Mind the type numpy sums in: it is the type of the operands.
    """
    raise NotImplementedError("TODO: lesson 18, int8_accumulate")


def int8_inner_product(x: np.ndarray, w: np.ndarray, b: np.ndarray, input_scale: float) -> np.ndarray:
    """y ≈ x wᵀ + b computed in int8: quantize w per channel (channel_scales) and x with
    `input_scale`, int8_accumulate, then rescale each column c by input_scale * s_w[c]
    (float32) and add the float bias b (C,). Returns float32 (N, C)."""
    raise NotImplementedError("TODO: lesson 18, int8_inner_product")


def digits(path: str, count: int, offset: int = 0):
    """`count` MNIST digits as (count, 784) float32 scaled by 1/256 (Caffe's scale), and labels."""
    pixels = read_images(MNIST / f"{path}-images-idx3-ubyte.gz")[offset:offset + count]
    labels = read_labels(MNIST / f"{path}-labels-idx1-ubyte.gz")[offset:offset + count]
    return pixels.reshape(count, -1).astype(np.float32) * np.float32(1 / 256), labels


def linear_classifier(x: np.ndarray, labels: np.ndarray, ridge: float = 10.0):
    """A 10-class linear classifier fitted in closed form (ridge regression on one-hot
    targets): real trained weights w (10, 784) and bias b (10,) in a fraction of a second."""
    targets = np.eye(10, dtype=np.float64)[labels]
    xb = np.hstack([x, np.ones((len(x), 1), np.float32)]).astype(np.float64)
    solution = np.linalg.solve(xb.T @ xb + ridge * np.eye(xb.shape[1]), xb.T @ targets)
    return solution[:-1].T.astype(np.float32), solution[-1].astype(np.float32)


if __name__ == "__main__":
    train_x, train_y = digits("train-10k", 5000)
    test_x, test_y = digits("t10k", 2000)
    w, b = linear_classifier(train_x, train_y)
    calibrated = float(np.abs(train_x[:500]).max()) / 127   # max-abs over a calibration set
    reference = test_x @ w.T + b
    print(f"float32 accuracy: {np.mean(reference.argmax(1) == test_y):.4f}")
    for what, scale in [("max-abs calibration", calibrated),
                        ("range 1/4 too small (clipping)", calibrated / 4),
                        ("range 30x too wide (an outlier)", calibrated * 30)]:
        y = int8_inner_product(test_x, w, b, scale)
        error = np.abs(y - reference).mean() / np.abs(reference).mean()
        print(f"int8, {what:<32} accuracy {np.mean(y.argmax(1) == test_y):.4f}, "
              f"mean |error| {100 * error:.2f}% of mean |y|")
