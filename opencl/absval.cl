// AbsVal, the device twin of minicaffe/layers/absval.py (Caffe's absval_layer.cu).
//   y = |x|      dE/dx = dE/dy sign(x), with sign(0) = 0
#include "common.cl"  // typedef float Dtype; KERNEL_LOOP(i, n): grid-stride loop

__kernel void absval_forward(const int n, __global const Dtype* in, __global Dtype* out) {
  KERNEL_LOOP(i, n) { out[i] = fabs(in[i]); }
}

// in_diff = dE/dy, in_data = x (never y: the layer refuses to run in place),
// out_diff = dE/dx. The sign as Caffe writes it, two comparisons: 0 at 0 and for NaN.
__kernel void absval_backward(const int n, __global const Dtype* in_diff,
                              __global const Dtype* in_data, __global Dtype* out_diff) {
  KERNEL_LOOP(i, n) {
    const Dtype sign = (Dtype)(in_data[i] > 0) - (Dtype)(in_data[i] < 0);
    out_diff[i] = in_diff[i] * sign;
  }
}
