"""Lesson 06: softmax loss. Complete the two functions marked TODO.

Shapes: scores x (N, C), integer labels (N,) in [0, C).

Check your work:   python -m pytest lessons/06_softmax_loss
Try it:            python lessons/06_softmax_loss/exercise.py
"""
import numpy as np


def softmax_loss_forward(x: np.ndarray, labels: np.ndarray):
    """Return (loss, prob): the mean over the batch of -log p[label], and p = softmax(x).

    Subtract each row's maximum before exponentiating, so that large scores do not
    overflow; clamp p[label] to at least np.finfo(np.float32).tiny before the log.
    """
    raise NotImplementedError("TODO: lesson 06, softmax_loss_forward")


def softmax_loss_backward(prob: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """dE/dx for the mean loss: (p - onehot(label)) / N."""
    raise NotImplementedError("TODO: lesson 06, softmax_loss_backward")


if __name__ == "__main__":
    x = np.zeros((2, 4))
    loss, prob = softmax_loss_forward(x, np.array([0, 3]))
    print(f"equal scores: loss {loss:.4f} = log 4 = {np.log(4):.4f}")
    print("gradient:\n", softmax_loss_backward(prob, np.array([0, 3])))
    loss, _ = softmax_loss_forward(np.array([[1000.0, 0.0, 990.0]]), np.array([0]))
    print(f"scores in the thousands: loss {loss:.4g} (expected log(1 + e^-10) = {np.log1p(np.exp(-10)):.4g})")
