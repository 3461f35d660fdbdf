"""Lesson 06, WRONG on purpose: softmax without subtracting the row maximum (overflows)."""
import numpy as np

FLT_MIN = np.finfo(np.float32).tiny


def softmax_loss_forward(x: np.ndarray, labels: np.ndarray):
    shifted = x  # BUG: x - x.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    prob = e / e.sum(axis=1, keepdims=True)
    p_true = prob[np.arange(len(labels)), labels]
    loss = -np.mean(np.log(np.maximum(p_true, FLT_MIN)))
    return loss, prob


def softmax_loss_backward(prob: np.ndarray, labels: np.ndarray) -> np.ndarray:
    dx = prob.copy()
    dx[np.arange(len(labels)), labels] -= 1
    return dx / len(labels)
