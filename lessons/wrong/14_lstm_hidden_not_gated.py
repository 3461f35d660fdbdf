"""Lesson 14, WRONG on purpose: only the cell is reset at a new sequence; h_{t-1} still reaches the gates."""
import numpy as np


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def lstm_unit_forward(c_prev, x, cont):
    d = c_prev.shape[1]
    i, f, o = sigmoid(x[:, :d]), sigmoid(x[:, d:2 * d]), sigmoid(x[:, 2 * d:3 * d])
    g = np.tanh(x[:, 3 * d:])
    c = cont[:, None] * f * c_prev + i * g
    return c, o * np.tanh(c)


def lstm_unit_backward(c_prev, x, cont, c, dc, dh):
    d = c_prev.shape[1]
    i, f, o = sigmoid(x[:, :d]), sigmoid(x[:, d:2 * d]), sigmoid(x[:, 2 * d:3 * d])
    g, tanh_c, cont = np.tanh(x[:, 3 * d:]), np.tanh(c), cont[:, None]
    dc_total = dc + dh * o * (1 - tanh_c ** 2)
    dx = np.concatenate([dc_total * g * i * (1 - i),
                         cont * dc_total * c_prev * f * (1 - f),
                         dh * tanh_c * o * (1 - o),
                         dc_total * i * (1 - g ** 2)], axis=1)
    return cont * f * dc_total, dx


def lstm_forward(x, cont, w_xc, b_c, w_hc, h0, c0):
    gates_x = x @ w_xc.T + b_c  # all T steps at once: nothing here depends on h
    h, c, hs = h0, c0, []
    for t in range(x.shape[0]):
        gates = gates_x[t] + h @ w_hc.T  # BUG: h not multiplied by cont_t
        c, h = lstm_unit_forward(c, gates, cont[t])
        hs.append(h)
    return np.stack(hs), c


def unrolled_lstm_net(T, N, I, D):
    layers = [
        f'layer {{ name: "input" type: "Input" top: "x" top: "cont" top: "c_0" top: "h_0" '
        f'input_param {{ shape {{ dim: {T} dim: {N} dim: {I} }} shape {{ dim: {T} dim: {N} }} '
        f'shape {{ dim: 1 dim: {N} dim: {D} }} shape {{ dim: 1 dim: {N} dim: {D} }} }} }}',
        f'layer {{ name: "x_transform" type: "InnerProduct" bottom: "x" top: "W_xc_x" '
        f'param {{ name: "W_xc" }} param {{ name: "b_c" }} '
        f'inner_product_param {{ num_output: {4 * D} axis: 2 }} }}',
        'layer { name: "W_xc_x_slice" type: "Slice" bottom: "W_xc_x" '
        + " ".join(f'top: "W_xc_x_{t}"' for t in range(1, T + 1)) + ' slice_param { axis: 0 } }',
        'layer { name: "cont_slice" type: "Slice" bottom: "cont" '
        + " ".join(f'top: "cont_{t}"' for t in range(1, T + 1)) + ' slice_param { axis: 0 } }',
    ]
    for t in range(1, T + 1):
        layers += [
            f'layer {{ name: "transform_{t}" type: "InnerProduct" bottom: "h_{t - 1}" '  # BUG
            f'top: "W_hc_h_{t - 1}" param {{ name: "W_hc" }} '
            f'inner_product_param {{ num_output: {4 * D} bias_term: false axis: 2 }} }}',
            f'layer {{ name: "gate_input_{t}" type: "Eltwise" bottom: "W_hc_h_{t - 1}" '
            f'bottom: "W_xc_x_{t}" top: "gate_input_{t}" }}',
            f'layer {{ name: "unit_{t}" type: "LSTMUnit" bottom: "c_{t - 1}" '
            f'bottom: "gate_input_{t}" bottom: "cont_{t}" top: "c_{t}" top: "h_{t}" }}',
        ]
    layers.append('layer { name: "h_concat" type: "Concat" '
                  + " ".join(f'bottom: "h_{t}"' for t in range(1, T + 1))
                  + ' top: "h" concat_param { axis: 0 } }')
    return "\n".join(layers) + "\n"
