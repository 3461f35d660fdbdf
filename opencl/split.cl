// Split, the device twin of minicaffe/layers/split.py (Caffe's split_layer.cu).
//   y_k = x (shared memory: forward has no kernel)      dE/dx = sum_k dE/dy_k
#include "common.cl"  // typedef float Dtype; KERNEL_LOOP(i, n): grid-stride loop

// One launch per top: the first writes bottom_diff (accumulate = 0), the rest add to it
// (accumulate = 1), so the bottom diff is overwritten, as every bottom diff is.
__kernel void split_backward(const int n, __global const Dtype* top_diff,
                             __global Dtype* bottom_diff, const int accumulate) {
  KERNEL_LOOP(i, n) {
    bottom_diff[i] = accumulate ? bottom_diff[i] + top_diff[i] : top_diff[i];
  }
}
