// SGD's update rule on the device: the twin of minicaffe/solvers/sgd.py
// (Caffe's sgd_solver.cu). The other steps of ApplyUpdate reuse math.cl:
// normalize is opencl.scal, L2 decay is opencl.axpy, clipping is opencl.sumsq
// and opencl.scal.
#include "common.cl"

// Momentum SGD, one pass over a parameter's values (g is its diff, h its history):
//   h = momentum h + local_rate g      (the new step, remembered for next time)
//   g = h                              (the Net then applies w -= g)
__kernel void sgd_update(const int n, __global Dtype* g, __global Dtype* h,
                         const Dtype momentum, const Dtype local_rate) {
  KERNEL_LOOP(i, n) {
    g[i] = h[i] = momentum * h[i] + local_rate * g[i];
  }
}

// L1 weight decay: g += decay sign(w), with sign(0) = 0 as in caffe_gpu_sign.
// (Caffe writes sign(w) to a scratch blob and then axpys it; one kernel needs no scratch.)
__kernel void sgd_l1_regularize(const int n, const Dtype decay, __global const Dtype* w,
                                __global Dtype* g) {
  KERNEL_LOOP(i, n) {
    g[i] += decay * ((Dtype)((Dtype)0 < w[i]) - (Dtype)(w[i] < (Dtype)0));
  }
}
