// MultinomialLogisticLoss, the device twin of minicaffe/layers/multinomial_logistic_loss.py
// (Caffe's multinomial_logistic_loss_layer.cpp, which has no GPU version). prob is
// (num, dim); label holds one class per item, a float truncated to int as Caffe's
// static_cast does (the host has checked that it lies in [0, dim)).
#include "common.cl"

// One work-group over the n = num items: top = scale * sum_i -log max(p_i,label_i, threshold),
// with scale = 1 / num.
__kernel void multinomial_logistic_loss_forward(const int n, __global const Dtype* prob,
                                                __global const Dtype* label, const int dim,
                                                const Dtype threshold, const Dtype scale,
                                                __global Dtype* top, __local Dtype* scratch) {
  Dtype part = 0;
  KERNEL_LOOP(i, n) { part -= log(fmax(prob[i * dim + (int)label[i]], threshold)); }
  const Dtype total = group_sum(part, scratch);
  if (get_local_id(0) == 0) top[0] = scale * total;
}

// Per element of prob: alpha * w / max(p, threshold) at the true class, 0 elsewhere;
// alpha = -1 / num, and w is the loss weight (the top's diff), read on the device.
__kernel void multinomial_logistic_loss_backward(const int n, __global const Dtype* prob,
                                                 __global const Dtype* label, const int dim,
                                                 const Dtype threshold, const Dtype alpha,
                                                 __global const Dtype* top_diff,
                                                 __global Dtype* bottom_diff) {
  KERNEL_LOOP(i, n) {
    const int item = i / dim;
    bottom_diff[i] = (i % dim == (int)label[item])
        ? alpha * top_diff[0] / fmax(prob[i], threshold) : 0;
  }
}
