// Exp, the device twin of minicaffe/layers/exp.py (Caffe's exp_layer.cu).
//   y = base^(scale x + shift) = outer_scale exp(inner_scale x)
//   dE/dx = dE/dy y inner_scale
// The host folds the parameters: inner_scale = scale ln(base), outer_scale = base^shift.
#include "common.cl"  // typedef float Dtype; KERNEL_LOOP(i, n): grid-stride loop

__kernel void exp_forward(const int n, __global const Dtype* in, __global Dtype* out,
                          const Dtype inner_scale, const Dtype outer_scale) {
  KERNEL_LOOP(i, n) { out[i] = outer_scale * exp(inner_scale * in[i]); }
}

// in_diff = dE/dy, out_data = y, out_diff = dE/dx. Needs only y, so in place works.
__kernel void exp_backward(const int n, __global const Dtype* in_diff,
                           __global const Dtype* out_data, __global Dtype* out_diff,
                           const Dtype inner_scale) {
  KERNEL_LOOP(i, n) { out_diff[i] = in_diff[i] * out_data[i] * inner_scale; }
}
