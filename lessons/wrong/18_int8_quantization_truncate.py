"""Lesson 18, WRONG on purpose: quantize casts x / s to int8 without rounding, so every value
is truncated toward zero (2.7 becomes 2, -0.9 becomes 0): a bias toward zero of half a step
on average, where rounding's error averages out."""
import numpy as np


def quantize(x: np.ndarray, scale) -> np.ndarray:
    inverse = np.float32(1) / np.asarray(scale, dtype=np.float32)
    q = np.asarray(x, dtype=np.float32) * inverse
    return np.clip(q, -127, 127).astype(np.int8)


def dequantize(q: np.ndarray, scale) -> np.ndarray:
    return np.asarray(q, dtype=np.float32) * np.asarray(scale, dtype=np.float32)


def channel_scales(w: np.ndarray) -> np.ndarray:
    largest = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    return np.where(largest > 0, largest / np.float32(127), np.float32(1)).astype(np.float32)


def int8_accumulate(xq: np.ndarray, wq: np.ndarray) -> np.ndarray:
    return xq.astype(np.int32) @ wq.astype(np.int32).T


def int8_inner_product(x: np.ndarray, w: np.ndarray, b: np.ndarray, input_scale: float) -> np.ndarray:
    s_w = channel_scales(w)
    wq = quantize(w, s_w[:, None])
    xq = quantize(x, input_scale)
    acc = int8_accumulate(xq, wq)
    return acc.astype(np.float32) * (np.float32(input_scale) * s_w) + b
