// Sigmoid, the device twin of minicaffe/layers/sigmoid.py (Caffe's sigmoid_layer.cu).
//   y = 1 / (1 + exp(-x)) = 0.5 tanh(0.5 x) + 0.5      dE/dx = dE/dy y (1 - y)
#include "common.cl"  // typedef float Dtype; KERNEL_LOOP(i, n): grid-stride loop

// The tanh form never overflows, unlike exp(-x) for x < -88.
__kernel void sigmoid_forward(const int n, __global const Dtype* in, __global Dtype* out) {
  KERNEL_LOOP(i, n) { out[i] = 0.5f * tanh(0.5f * in[i]) + 0.5f; }
}

// in_diff = dE/dy, out_data = y, out_diff = dE/dx. Needs only y, so in place works.
__kernel void sigmoid_backward(const int n, __global const Dtype* in_diff,
                               __global const Dtype* out_data, __global Dtype* out_diff) {
  KERNEL_LOOP(i, n) {
    const Dtype y = out_data[i];
    out_diff[i] = in_diff[i] * y * (1 - y);
  }
}
