// Clip, the device twin of minicaffe/layers/clip.py (Caffe's clip_layer.cu).
//   y = max(lo, min(x, hi))      dE/dx = dE/dy (lo <= x <= hi ? 1 : 0)
#include "common.cl"  // typedef float Dtype; KERNEL_LOOP(i, n): grid-stride loop

// Comparisons rather than fmin/fmax: those drop a NaN operand, but numpy's minimum and
// maximum keep it, and the engines should agree. The order (upper bound first) makes
// every output lo when lo > hi, as in Caffe.
__kernel void clip_forward(const int n, __global const Dtype* in, __global Dtype* out,
                           const Dtype lo, const Dtype hi) {
  KERNEL_LOOP(i, n) {
    const Dtype below_hi = in[i] > hi ? hi : in[i];
    out[i] = lo > below_hi ? lo : below_hi;
  }
}

// in_diff = dE/dy, in_data = x, out_diff = dE/dx. The bounds themselves pass the gradient.
__kernel void clip_backward(const int n, __global const Dtype* in_diff,
                            __global const Dtype* in_data, __global Dtype* out_diff,
                            const Dtype lo, const Dtype hi) {
  KERNEL_LOOP(i, n) {
    out_diff[i] = in_diff[i] * (Dtype)(in_data[i] >= lo && in_data[i] <= hi);
  }
}
