// Eltwise MAX, the device twin of the MAX case of minicaffe/layers/eltwise.py
// (Caffe's MaxForward / MaxBackward in eltwise_layer.cu). PROD and SUM need no kernel
// of their own: the layer calls opencl.mul, opencl.axpy, ... (math.cl).
//   y = max_k x_k, mask = the k that won       dE/dx_k = mask == k ? dE/dy : 0
#include "common.cl"  // typedef float Dtype; KERNEL_LOOP(i, n): grid-stride loop

// A running max, one launch per bottom: (a, b) = (x_0, x_1) with k = 1 starts it,
// then (a, b) = (y, x_k) for k = 2, 3, ... (a and y are then the same buffer).
// Ties: between bottoms 0 and 1, bottom 1 wins; after that only a strictly greater
// value wins, as in the numpy body.
__kernel void eltwise_max_forward(const int n, __global const Dtype* a,
                                  __global const Dtype* b, const int k,
                                  __global Dtype* y, __global Dtype* mask) {
  KERNEL_LOOP(i, n) {
    if (k == 1) {
      const int first_wins = a[i] > b[i];
      y[i] = first_wins ? a[i] : b[i];
      mask[i] = first_wins ? 0 : 1;
    } else if (b[i] > a[i]) {
      y[i] = b[i];
      mask[i] = k;
    }
  }
}

// The whole gradient goes to the bottom that won; mask holds its index (as a Dtype).
__kernel void eltwise_max_backward(const int n, __global const Dtype* top_diff,
                                   __global const Dtype* mask, const int k,
                                   __global Dtype* bottom_diff) {
  KERNEL_LOOP(i, n) { bottom_diff[i] = mask[i] == k ? top_diff[i] : 0; }
}
