// ELU, the device twin of minicaffe/layers/elu.py (Caffe's elu_layer.cu).
//   y = x > 0 ? x : alpha (exp(x) - 1)      dE/dx = dE/dy (x > 0 ? 1 : y + alpha)
#include "common.cl"  // typedef float Dtype; KERNEL_LOOP(i, n): grid-stride loop

__kernel void elu_forward(const int n, __global const Dtype* in, __global Dtype* out,
                          const Dtype alpha) {
  KERNEL_LOOP(i, n) { out[i] = in[i] > 0 ? in[i] : alpha * (exp(in[i]) - 1); }
}

// in_diff = dE/dy, out_data = y, in_data = x (or y when in place: same sign for
// alpha >= 0), out_diff = dE/dx. On the negative side alpha exp(x) = y + alpha.
__kernel void elu_backward(const int n, __global const Dtype* in_diff,
                           __global const Dtype* out_data, __global const Dtype* in_data,
                           __global Dtype* out_diff, const Dtype alpha) {
  KERNEL_LOOP(i, n) {
    out_diff[i] = in_data[i] > 0 ? in_diff[i] : in_diff[i] * (out_data[i] + alpha);
  }
}
