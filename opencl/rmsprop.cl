// RMSProp's update rule on the device: the twin of minicaffe/solvers/rmsprop.py
// (Caffe's rmsprop_solver.cu).
#include "common.cl"

// g is the parameter's diff, h its history (a decaying mean of the squared gradients):
//   h = rms_decay h + (1 - rms_decay) g^2
//   g = local_rate g / (sqrt(h) + delta)          (w -= g)
__kernel void rmsprop_update(const int n, __global Dtype* g, __global Dtype* h,
                             const Dtype rms_decay, const Dtype delta, const Dtype local_rate) {
  KERNEL_LOOP(i, n) {
    const Dtype gi = g[i];
    const Dtype hi = h[i] = (1 - rms_decay) * (gi * gi) + rms_decay * h[i];
    g[i] = local_rate * (gi / (sqrt(hi) + delta));
  }
}
