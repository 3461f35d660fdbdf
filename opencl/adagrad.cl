// AdaGrad's update rule on the device: the twin of minicaffe/solvers/adagrad.py
// (Caffe's adagrad_solver.cu).
#include "common.cl"

// g is the parameter's diff, h its history (the sum of every squared gradient so far):
//   h = h + g^2
//   g = local_rate g / (sqrt(h) + delta)          (w -= g)
__kernel void adagrad_update(const int n, __global Dtype* g, __global Dtype* h,
                             const Dtype delta, const Dtype local_rate) {
  KERNEL_LOOP(i, n) {
    const Dtype gi = g[i];
    const Dtype hi = h[i] = h[i] + gi * gi;
    g[i] = local_rate * (gi / (sqrt(hi) + delta));
  }
}
