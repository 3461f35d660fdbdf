// Nesterov's update rule on the device: the twin of minicaffe/solvers/nesterov.py
// (Caffe's nesterov_solver.cu).
#include "common.cl"

// g is the parameter's diff, h its history (the velocity v):
//   v_t = momentum v_{t-1} + local_rate g
//   g   = (1 + momentum) v_t - momentum v_{t-1}     (the look-ahead step; w -= g)
__kernel void nesterov_update(const int n, __global Dtype* g, __global Dtype* h,
                              const Dtype momentum, const Dtype local_rate) {
  KERNEL_LOOP(i, n) {
    const Dtype previous = h[i];
    const Dtype current = h[i] = momentum * previous + local_rate * g[i];
    g[i] = (1 + momentum) * current - momentum * previous;
  }
}
