"""Lesson 08, reference solution: SGD with momentum, and learning-rate policies."""
import numpy as np


def step_lr(base_lr: float, gamma: float, stepsize: int, it: int) -> float:
    return base_lr * gamma ** (it // stepsize)


def inv_lr(base_lr: float, gamma: float, power: float, it: int) -> float:
    return base_lr * (1.0 + gamma * it) ** (-power)


def sgd_momentum_update(w: np.ndarray, g: np.ndarray, v: np.ndarray, lr: float,
                        momentum: float, weight_decay: float):
    g = g + weight_decay * w
    v = momentum * v + lr * g
    return w - v, v
