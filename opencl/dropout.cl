// Dropout, the device twin of minicaffe/layers/dropout.py (Caffe's dropout_layer.cu).
//   TRAIN: mask = u < keep, y = x mask scale        dE/dx = dE/dy mask scale
// with keep = 1 - dropout_ratio and scale = 1 / keep. (TEST is a copy: no kernel.)
#include "common.cl"  // Dtype; KERNEL_LOOP(i, n): grid-stride loop; hash_uniform

// hash_uniform(seed, i) (common.cl): the i-th uniform of SplitMix64 for `seed`, the
// same as numpy's helpers.hash_uniform, so both engines draw the same mask.

// mask keeps the 0s and 1s for backward; `in` and `out` may be the same buffer.
__kernel void dropout_forward(const int n, __global const Dtype* in, const ulong seed,
                              const Dtype keep, const Dtype scale, __global Dtype* mask,
                              __global Dtype* out) {
  KERNEL_LOOP(i, n) {
    const Dtype m = hash_uniform(seed, i) < keep;  // 1 or 0
    mask[i] = m;
    out[i] = in[i] * m * scale;
  }
}

// in_diff = dE/dy, out_diff = dE/dx (may be the same buffer)
__kernel void dropout_backward(const int n, __global const Dtype* in_diff,
                               __global const Dtype* mask, const Dtype scale,
                               __global Dtype* out_diff) {
  KERNEL_LOOP(i, n) { out_diff[i] = in_diff[i] * mask[i] * scale; }
}
