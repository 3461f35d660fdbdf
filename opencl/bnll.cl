// BNLL (softplus), the device twin of minicaffe/layers/bnll.py (Caffe's bnll_layer.cu).
//   y = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))
//   dE/dx = dE/dy e / (e + 1),  e = exp(min(x, threshold))
#include "common.cl"  // typedef float Dtype; KERNEL_LOOP(i, n): grid-stride loop

// The exponent -|x| is never positive, so exp cannot overflow; log1p stays accurate
// where 1 + exp(-|x|) would round to 1.
__kernel void bnll_forward(const int n, __global const Dtype* in, __global Dtype* out) {
  KERNEL_LOOP(i, n) { out[i] = fmax(in[i], (Dtype)0) + log1p(exp(-fabs(in[i]))); }
}

// in_diff = dE/dy, in_data = x, out_diff = dE/dx. Reads x, so in place (x overwritten
// by y) gives the wrong gradient. The clamp (50) keeps exp finite: e / (e + 1) is 1
// long before, but inf / inf would be NaN. Written as a comparison rather than fmin so
// that a NaN input stays NaN, as numpy's minimum (and Caffe's CPU code) have it.
__kernel void bnll_backward(const int n, __global const Dtype* in_diff,
                            __global const Dtype* in_data, __global Dtype* out_diff,
                            const Dtype threshold) {
  KERNEL_LOOP(i, n) {
    const Dtype x = in_data[i];
    const Dtype e = exp(x > threshold ? threshold : x);
    out_diff[i] = in_diff[i] * e / (e + 1);
  }
}
