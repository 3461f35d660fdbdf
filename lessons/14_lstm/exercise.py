"""Lesson 14: an LSTM is a small Net unrolled in time. Complete the functions marked TODO.

Check your work:   python -m pytest lessons/14_lstm
Try it:            python lessons/14_lstm/exercise.py

Shapes: N streams (the batch), D hidden units, I inputs, T time steps. A gate input holds
four blocks of D values per stream, in Caffe's order [i', f', o', g'].
"""
import numpy as np


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def lstm_unit_forward(c_prev, x, cont):
    """One step of the cell (Caffe's LSTMUnit) for c_prev (N, D), gate inputs x (N, 4D) and
    sequence indicators cont (N,): return (c, h), each (N, D), with
        i, f, o = sigmoid(i', f', o'),  g = tanh(g'),
        c = cont * f * c_prev + i * g,  h = o * tanh(c)."""
    raise NotImplementedError("TODO: lesson 14, lstm_unit_forward")


def lstm_unit_backward(c_prev, x, cont, c, dc, dh):
    """The gradients of the step: given dE/dc and dE/dh (N, D), return (dE/dc_prev (N, D),
    dE/dx (N, 4D), blocks in the order of x). No gradient for cont."""
    raise NotImplementedError("TODO: lesson 14, lstm_unit_backward")


def lstm_forward(x, cont, w_xc, b_c, w_hc, h0, c0):
    """Caffe's LSTM over x (T, N, I) and cont (T, N), from the state h0, c0 (N, D):
        gate input_t = W_xc x_t + b_c + W_hc (cont_t * h_{t-1}),  then the cell step.
    w_xc (4D, I), b_c (4D,), w_hc (4D, D). Return (h for every step (T, N, D), the last c)."""
    raise NotImplementedError("TODO: lesson 14, lstm_forward")


def unrolled_lstm_net(T, N, I, D):
    """The same LSTM as a prototxt (a string) for minicaffe's Net, as Caffe's LSTM layer
    builds it. Inputs (one Input layer, tops in this order): "x" (T, N, I), "cont" (T, N),
    "c_0" and "h_0" (1, N, D). Output: "h" (T, N, D). Learnable blobs, in this order:
    W_xc and b_c (one InnerProduct over all T steps at once, axis 2), then W_hc, shared by
    the T hidden transforms (param { name: "W_hc" }). Layers you need: Slice, Scale
    (axis 0, to multiply h_{t-1} by cont_t), InnerProduct, Eltwise, LSTMUnit, Concat."""
    raise NotImplementedError("TODO: lesson 14, unrolled_lstm_net")


if __name__ == "__main__":
    import math
    # i = o = sigmoid(0) = 1/2, f = sigmoid(ln 3) = 3/4, g = tanh(ln 2) = 3/5; c_prev = 2.
    x = np.array([[0.0, math.log(3.0), 0.0, math.log(2.0)]])
    for cont in (1.0, 0.0):
        c, h = lstm_unit_forward(np.array([[2.0]]), x, np.array([cont]))
        print(f"cont {cont}: c = {c[0, 0]:.4f} (expect {1.8 if cont else 0.3}), h = {h[0, 0]:.4f}")
    print(unrolled_lstm_net(2, 1, 1, 1))
