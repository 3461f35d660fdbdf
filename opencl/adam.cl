// Adam's update rule on the device: the twin of minicaffe/solvers/adam.py
// (Caffe's adam_solver.cu).
#include "common.cl"

// g is the parameter's diff, m and v its two history blobs:
//   m = beta1 m + (1 - beta1) g
//   v = beta2 v + (1 - beta2) g^2
//   g = corrected_rate m / (sqrt(v) + eps)       (w -= g)
// corrected_rate = rate lr_mult sqrt(1 - beta2^t) / (1 - beta1^t) is computed on
// the host, once per parameter, since it is the same for every value.
__kernel void adam_update(const int n, __global Dtype* g, __global Dtype* m,
                          __global Dtype* v, const Dtype beta1, const Dtype beta2,
                          const Dtype eps, const Dtype corrected_rate) {
  KERNEL_LOOP(i, n) {
    const Dtype gi = g[i];
    const Dtype mi = m[i] = (1 - beta1) * gi + beta1 * m[i];
    const Dtype vi = v[i] = (1 - beta2) * gi * gi + beta2 * v[i];
    g[i] = corrected_rate * mi / (sqrt(vi) + eps);
  }
}
