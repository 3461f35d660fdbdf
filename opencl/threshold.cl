// Threshold, the device twin of minicaffe/layers/threshold.py (Caffe's threshold_layer.cu).
//   y = x > threshold ? 1 : 0        (no backward: a step function)
#include "common.cl"  // typedef float Dtype; KERNEL_LOOP(i, n): grid-stride loop

__kernel void threshold_forward(const int n, __global const Dtype* in, __global Dtype* out,
                                const Dtype threshold) {
  KERNEL_LOOP(i, n) { out[i] = in[i] > threshold ? 1 : 0; }
}
