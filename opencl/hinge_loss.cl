// HingeLoss, the device twin of minicaffe/layers/hinge_loss.py (Caffe's
// hinge_loss_layer.cpp, which has no GPU version). Scores are (num, dim); label holds one
// class per item, a float truncated to int (the host has checked it lies in [0, dim)).
#include "common.cl"

// delta = +1 at the item's true class, -1 elsewhere.
#define DELTA(i) ((i) % dim == (int)label[(i) / dim] ? (Dtype)1 : (Dtype)-1)

// Per score: h = max(0, 1 - delta x).
__kernel void hinge_loss_margins(const int n, __global const Dtype* x,
                                 __global const Dtype* label, const int dim,
                                 __global Dtype* h) {
  KERNEL_LOOP(i, n) { h[i] = fmax((Dtype)0, 1 - DELTA(i) * x[i]); }
}

// One work-group: top = scale * sum(h) (L1) or scale * sum(h^2) (squared), scale = 1 / num.
__kernel void hinge_loss_total(const int n, __global const Dtype* h, const int squared,
                               const Dtype scale, __global Dtype* top, __local Dtype* scratch) {
  Dtype part = 0;
  KERNEL_LOOP(i, n) { part += squared ? h[i] * h[i] : h[i]; }
  const Dtype total = group_sum(part, scratch);
  if (get_local_id(0) == 0) top[0] = scale * total;
}

// Per score: dx = alpha w delta [h > 0] (L1) or alpha w delta h (squared), with
// alpha = -1/num or -2/num and w the loss weight (the top's diff), read on the device.
__kernel void hinge_loss_backward(const int n, __global const Dtype* h,
                                  __global const Dtype* label, const int dim, const int squared,
                                  const Dtype alpha, __global const Dtype* top_diff,
                                  __global Dtype* bottom_diff) {
  KERNEL_LOOP(i, n) {
    const Dtype slope = squared ? h[i] : (Dtype)(h[i] > 0);
    bottom_diff[i] = alpha * top_diff[0] * DELTA(i) * slope;
  }
}
