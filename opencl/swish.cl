// Swish, the device twin of minicaffe/layers/swish.py (Caffe's swish_layer.cu).
//   s = sigmoid(beta x) = 0.5 tanh(0.5 beta x) + 0.5      y = x s
//   dE/dx = dE/dy (beta y + s (1 - beta y))
#include "common.cl"  // typedef float Dtype; KERNEL_LOOP(i, n): grid-stride loop

// Writes s as well as y: backward needs it. The sigmoid is sigmoid.cl's expression.
// In place (out == in) each work-item reads x before it writes y.
__kernel void swish_forward(const int n, __global const Dtype* in, __global Dtype* out,
                            __global Dtype* sigmoid, const Dtype beta) {
  KERNEL_LOOP(i, n) {
    const Dtype x = in[i];
    const Dtype s = 0.5f * tanh(0.5f * (x * beta)) + 0.5f;
    sigmoid[i] = s;
    out[i] = x * s;
  }
}

// in_diff = dE/dy, out_data = y, sigmoid = s, out_diff = dE/dx. Needs no x: in place works.
__kernel void swish_backward(const int n, __global const Dtype* in_diff,
                             __global const Dtype* out_data, __global const Dtype* sigmoid,
                             __global Dtype* out_diff, const Dtype beta) {
  KERNEL_LOOP(i, n) {
    const Dtype by = beta * out_data[i];
    out_diff[i] = in_diff[i] * (by + sigmoid[i] * (1 - by));
  }
}
