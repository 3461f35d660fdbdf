// ReLU, the device twin of minicaffe/layers/relu.py (Caffe's relu_layer.cu).
//   y = x > 0 ? x : negative_slope x       dE/dx = dE/dy (x > 0 ? 1 : negative_slope)
#include "common.cl"  // typedef float Dtype; KERNEL_LOOP(i, n): grid-stride loop

__kernel void relu_forward(const int n, __global const Dtype* in, __global Dtype* out,
                           const Dtype negative_slope) {
  KERNEL_LOOP(i, n) { out[i] = in[i] > 0 ? in[i] : in[i] * negative_slope; }
}

// in_diff = dE/dy, in_data = x (or y when in place: same sign), out_diff = dE/dx
__kernel void relu_backward(const int n, __global const Dtype* in_diff,
                            __global const Dtype* in_data, __global Dtype* out_diff,
                            const Dtype negative_slope) {
  KERNEL_LOOP(i, n) {
    out_diff[i] = in_diff[i] * ((in_data[i] > 0) + (in_data[i] <= 0) * negative_slope);
  }
}
