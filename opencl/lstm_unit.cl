// LSTMUnit, the device twin of minicaffe/layers/lstm_unit.py (Caffe's lstm_unit_layer.cu).
// One work-item per (stream n, unit d); the gate input of stream n is [i' f' o' g'], each
// block D wide:
//   i, f, o = sigmoid(i', f', o')   g = tanh(g')
//   c = cont_n f c_prev + i g       h = o tanh(c)
#include "common.cl"  // typedef float Dtype; KERNEL_LOOP(i, n): grid-stride loop

inline Dtype lstm_sigmoid(const Dtype x) { return 1 / (1 + exp(-x)); }

// count = N * D. c_prev, c, h: (N, D); x: (N, 4D); cont: (N).
__kernel void lstm_unit_forward(const int count, const int dim, __global const Dtype* c_prev,
                                __global const Dtype* x, __global const Dtype* cont,
                                __global Dtype* c, __global Dtype* h) {
  KERNEL_LOOP(index, count) {
    const int n = index / dim, d = index % dim;
    __global const Dtype* gates = x + 4 * dim * n;
    const Dtype i = lstm_sigmoid(gates[d]);
    const Dtype f = lstm_sigmoid(gates[dim + d]);
    const Dtype o = lstm_sigmoid(gates[2 * dim + d]);
    const Dtype g = tanh(gates[3 * dim + d]);
    const Dtype c_new = cont[n] * f * c_prev[index] + i * g;
    c[index] = c_new;
    h[index] = o * tanh(c_new);
  }
}

// The gates are recomputed from x (no activation buffer kept between the passes).
// dc_total: the gradient reaching c, directly and through h = o tanh(c).
// want_c_prev / want_x: propagate_down[0] / [1]; a bottom not asked for keeps its diff.
__kernel void lstm_unit_backward(const int count, const int dim, const int want_c_prev,
                                 const int want_x, __global const Dtype* c_prev,
                                 __global const Dtype* x, __global const Dtype* cont,
                                 __global const Dtype* c, __global const Dtype* c_diff,
                                 __global const Dtype* h_diff, __global Dtype* c_prev_diff,
                                 __global Dtype* x_diff) {
  KERNEL_LOOP(index, count) {
    const int n = index / dim, d = index % dim;
    __global const Dtype* gates = x + 4 * dim * n;
    __global Dtype* gates_diff = x_diff + 4 * dim * n;
    const Dtype i = lstm_sigmoid(gates[d]);
    const Dtype f = lstm_sigmoid(gates[dim + d]);
    const Dtype o = lstm_sigmoid(gates[2 * dim + d]);
    const Dtype g = tanh(gates[3 * dim + d]);
    const Dtype tanh_c = tanh(c[index]);
    const Dtype dc_total = c_diff[index] + h_diff[index] * o * (1 - tanh_c * tanh_c);
    if (want_c_prev) c_prev_diff[index] = cont[n] * f * dc_total;
    if (!want_x) continue;
    gates_diff[d] = dc_total * g * i * (1 - i);
    gates_diff[dim + d] = cont[n] * dc_total * c_prev[index] * f * (1 - f);
    gates_diff[2 * dim + d] = h_diff[index] * tanh_c * o * (1 - o);
    gates_diff[3 * dim + d] = dc_total * i * (1 - g * g);
  }
}
