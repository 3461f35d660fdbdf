// AdaDelta's update rule on the device: the twin of minicaffe/solvers/adadelta.py
// (Caffe's adadelta_solver.cu).
#include "common.cl"

// g is the parameter's diff; s and u are its two history blobs, decaying means of the
// squared gradients and of the squared steps (rho is the solver's `momentum`):
//   s = rho s + (1 - rho) g^2
//   d = g sqrt((u + delta) / (s + delta))         (the step, in the units of w)
//   u = rho u + (1 - rho) d^2                     (remembered before the rate is applied)
//   g = local_rate d                              (w -= g)
__kernel void adadelta_update(const int n, __global Dtype* g, __global Dtype* s,
                              __global Dtype* u, const Dtype rho, const Dtype delta,
                              const Dtype local_rate) {
  KERNEL_LOOP(i, n) {
    const Dtype gi = g[i];
    const Dtype si = s[i] = (1 - rho) * (gi * gi) + rho * s[i];
    const Dtype di = gi * sqrt((u[i] + delta) / (si + delta));
    u[i] = (1 - rho) * (di * di) + rho * u[i];
    g[i] = local_rate * di;
  }
}
