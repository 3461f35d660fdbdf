"""Lesson 02, WRONG on purpose: the weight gradient is transposed, x^T dy instead of dy^T x."""
import numpy as np


def inner_product_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return x @ w.T + b


def inner_product_backward(x: np.ndarray, w: np.ndarray, dy: np.ndarray):
    dx = dy @ w
    dw = x.T @ dy        # BUG: (K, N), the transpose of dE/dw
    db = dy.sum(axis=0)
    return dx, dw, db
