"""Lesson 02: a fully connected layer. Complete the two functions marked TODO.

Shapes: x (M, K) a batch of M inputs, w (N, K) one row per output, b (N,), y (M, N).

Check your work:   python -m pytest lessons/02_inner_product
Try it:            python lessons/02_inner_product/exercise.py
"""
import numpy as np


def inner_product_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """y = x w^T + b, for every row of x at once."""
    raise NotImplementedError("TODO: lesson 02, inner_product_forward")


def inner_product_backward(x: np.ndarray, w: np.ndarray, dy: np.ndarray):
    """Return (dx, dw, db) from dy = dE/dy of shape (M, N).

    dx = dE/dx (M, K), dw = dE/dw (N, K), db = dE/db (N,): each is one product or sum
    over the batch; see README.md for the derivation.
    """
    raise NotImplementedError("TODO: lesson 02, inner_product_backward")


if __name__ == "__main__":
    x = np.array([[1.0, 2.0]])                       # one example, K = 2
    w = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # N = 3 outputs
    b = np.array([0.0, 0.0, 1.0])
    print("y =", inner_product_forward(x, w, b), "(expected [[1. 2. 4.]])")
    dx, dw, db = inner_product_backward(x, w, np.ones((1, 3)))
    print("dx =", dx, "(expected [[2. 2.]])")
    print("dw =", dw.tolist(), "(expected three copies of x)")
    print("db =", db, "(expected [1. 1. 1.])")
