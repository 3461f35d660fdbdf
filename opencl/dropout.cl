// Dropout, the device twin of minicaffe/layers/dropout.py (Caffe's dropout_layer.cu).
//   TRAIN: mask = u < keep, y = x mask scale        dE/dx = dE/dy mask scale
// with keep = 1 - dropout_ratio and scale = 1 / keep. (TEST is a copy: no kernel.)
#include "common.cl"  // typedef float Dtype; KERNEL_LOOP(i, n): grid-stride loop

// u_i in [0, 1): SplitMix64's output i for state `seed`, the top 24 bits as a float.
// The same hash as dropout.hash_uniform in numpy, so both engines draw the same mask.
// Counter-based: u_i needs only (seed, i), so every work-item draws its own.
inline Dtype hash_uniform(const ulong seed, const int i) {
  ulong z = seed + ((ulong)i + 1) * 0x9E3779B97F4A7C15UL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
  z = z ^ (z >> 31);
  return (Dtype)(z >> 40) * (Dtype)(1.0f / 16777216.0f);  // 2^-24: exact in float
}

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
