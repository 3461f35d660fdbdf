// EuclideanLoss, the device twin of minicaffe/layers/euclidean_loss.py (Caffe's
// euclidean_loss_layer.cu). diff = a - b comes from opencl.sub (math.cl).
#include "common.cl"

// One work-group: top = scale * sum(diff^2), with scale = 1 / 2N.
__kernel void euclidean_loss_forward(const int n, __global const Dtype* diff,
                                     const Dtype scale, __global Dtype* top,
                                     __local Dtype* scratch) {
  Dtype part = 0;
  KERNEL_LOOP(i, n) { part += diff[i] * diff[i]; }
  const Dtype dot = group_sum(part, scratch);
  if (get_local_id(0) == 0) top[0] = scale * dot;
}

// bottom_diff = alpha * w * diff, with alpha = +-1 / N and w the loss weight (the top's
// diff), read on the device.
__kernel void euclidean_loss_backward(const int n, const Dtype alpha,
                                      __global const Dtype* top_diff,
                                      __global const Dtype* diff, __global Dtype* bottom_diff) {
  KERNEL_LOOP(i, n) { bottom_diff[i] = alpha * top_diff[0] * diff[i]; }
}
