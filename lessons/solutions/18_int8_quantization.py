"""Lesson 18, reference solution: int8 quantization of an inner product."""
import numpy as np


def quantize(x: np.ndarray, scale) -> np.ndarray:
    # Multiply by 1/s, rounded to float32 once, as minicaffe (and its OpenCL kernel) does.
    inverse = np.float32(1) / np.asarray(scale, dtype=np.float32)
    q = np.rint(np.asarray(x, dtype=np.float32) * inverse)   # round half to even
    return np.clip(q, -127, 127).astype(np.int8)             # clip BEFORE the cast: no wrap-around


def dequantize(q: np.ndarray, scale) -> np.ndarray:
    return np.asarray(q, dtype=np.float32) * np.asarray(scale, dtype=np.float32)


def channel_scales(w: np.ndarray) -> np.ndarray:
    largest = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)   # one per output channel (row)
    return np.where(largest > 0, largest / np.float32(127), np.float32(1)).astype(np.float32)


def int8_accumulate(xq: np.ndarray, wq: np.ndarray) -> np.ndarray:
    # Widen first: an int8 x int8 matmul in numpy sums in int8 and wraps around.
    return xq.astype(np.int32) @ wq.astype(np.int32).T


def int8_inner_product(x: np.ndarray, w: np.ndarray, b: np.ndarray, input_scale: float) -> np.ndarray:
    s_w = channel_scales(w)
    wq = quantize(w, s_w[:, None])
    xq = quantize(x, input_scale)
    acc = int8_accumulate(xq, wq)                               # exact int32 sums
    return acc.astype(np.float32) * (np.float32(input_scale) * s_w) + b
