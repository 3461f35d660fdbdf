"""Lesson 03, reference solution: gradient checking."""
import numpy as np


def numeric_gradient(f, x: np.ndarray, h: float = 1e-2) -> np.ndarray:
    grad = np.zeros(x.shape, dtype=np.float64)
    for i in np.ndindex(x.shape):
        keep = x[i]
        x[i] = keep + h
        plus = f()
        x[i] = keep - h
        minus = f()
        x[i] = keep
        grad[i] = (plus - minus) / (2 * h)
    return grad


def gradients_agree(analytic, numeric, threshold: float = 1e-3) -> bool:
    a, e = np.asarray(analytic, dtype=np.float64), np.asarray(numeric, dtype=np.float64)
    scale = np.maximum(np.maximum(np.abs(a), np.abs(e)), 1.0)
    return bool(np.all(np.abs(a - e) <= threshold * scale))
