// Log, the device twin of minicaffe/layers/log.py (Caffe's log_layer.cu).
//   y = ln(scale x + shift) base_scale        dE/dx = dE/dy num_scale / (scale x + shift)
// with base_scale = 1 / ln(base) and num_scale = scale / ln(base), worked out by the host.
#include "common.cl"  // typedef float Dtype; KERNEL_LOOP(i, n): grid-stride loop

__kernel void log_forward(const int n, __global const Dtype* in, __global Dtype* out,
                          const Dtype scale, const Dtype shift, const Dtype base_scale) {
  KERNEL_LOOP(i, n) { out[i] = log(in[i] * scale + shift) * base_scale; }
}

// in_diff = dE/dy, in_data = x, out_diff = dE/dx. Reads x, so not for in-place use.
__kernel void log_backward(const int n, __global const Dtype* in_diff,
                           __global const Dtype* in_data, __global Dtype* out_diff,
                           const Dtype scale, const Dtype shift, const Dtype num_scale) {
  KERNEL_LOOP(i, n) {
    const Dtype inverse = 1 / (in_data[i] * scale + shift);
    out_diff[i] = in_diff[i] * (inverse * num_scale);
  }
}
