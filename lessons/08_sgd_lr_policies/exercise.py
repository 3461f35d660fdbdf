"""Lesson 08: SGD with momentum, and learning-rate policies. Complete the three TODOs.

Check your work:   python -m pytest lessons/08_sgd_lr_policies
Try it:            python lessons/08_sgd_lr_policies/exercise.py
"""
import numpy as np


def step_lr(base_lr: float, gamma: float, stepsize: int, it: int) -> float:
    """Caffe's "step" policy: base_lr * gamma ^ floor(it / stepsize)."""
    raise NotImplementedError("TODO: lesson 08, step_lr")


def inv_lr(base_lr: float, gamma: float, power: float, it: int) -> float:
    """Caffe's "inv" policy: base_lr * (1 + gamma * it) ^ (-power)."""
    raise NotImplementedError("TODO: lesson 08, inv_lr")


def sgd_momentum_update(w: np.ndarray, g: np.ndarray, v: np.ndarray, lr: float,
                        momentum: float, weight_decay: float):
    """One SGD step in Caffe's order; returns the new (w, v) and leaves the inputs alone.

    g <- g + weight_decay * w;  v <- momentum * v + lr * g;  w <- w - v.
    """
    raise NotImplementedError("TODO: lesson 08, sgd_momentum_update")


if __name__ == "__main__":
    for it in (0, 1000, 10000):
        print(f"inv rate at {it:>5}: {inv_lr(0.01, 1e-4, 0.75, it):.6f}", end="   ")
        print(f"step rate: {step_lr(0.01, 0.1, 5000, it):.6f}")
    # Minimise E = w^2 / 2 (gradient w) from w = 1: momentum overshoots and comes back.
    w, v = np.array([1.0]), np.zeros(1)
    for it in range(8):
        w, v = sgd_momentum_update(w, w.copy(), v, 0.1, 0.9, 0.0)
        print(f"iteration {it + 1}: w = {w[0]:+.4f}")
