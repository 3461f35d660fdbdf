// TanH, the device twin of minicaffe/layers/tanh.py (Caffe's tanh_layer.cu).
//   y = tanh(x)      dE/dx = dE/dy (1 - y^2)
#include "common.cl"  // typedef float Dtype; KERNEL_LOOP(i, n): grid-stride loop

__kernel void tanh_forward(const int n, __global const Dtype* in, __global Dtype* out) {
  KERNEL_LOOP(i, n) { out[i] = tanh(in[i]); }
}

// in_diff = dE/dy, out_data = y, out_diff = dE/dx. Needs only y, so in place works.
__kernel void tanh_backward(const int n, __global const Dtype* in_diff,
                            __global const Dtype* out_data, __global Dtype* out_diff) {
  KERNEL_LOOP(i, n) {
    const Dtype y = out_data[i];
    out_diff[i] = in_diff[i] * (1 - y * y);
  }
}
