// SigmoidCrossEntropyLoss, the device twin of minicaffe/layers/sigmoid_cross_entropy_loss.py
// (Caffe's sigmoid_cross_entropy_loss_layer.cu). The sigmoid itself comes from sigmoid.cl
// (the inner Sigmoid layer); these kernels add the loss. A target is ignored when
// has_ignore_label and its value truncated to int equals ignore_label.
#include "common.cl"

#define IGNORED(t) (has_ignore_label && (int)(t) == ignore_label)

// Per element: loss = max(x, 0) - x t + log(1 + exp(-|x|)) (the cross-entropy of t and
// sigmoid(x), with no exp that can overflow), count = 1; both 0 where ignored.
__kernel void sigmoid_cross_entropy_loss_forward(const int n, __global const Dtype* x,
                                                 __global const Dtype* target,
                                                 const int has_ignore_label,
                                                 const int ignore_label, __global Dtype* loss,
                                                 __global Dtype* counts) {
  KERNEL_LOOP(i, n) {
    if (IGNORED(target[i])) {
      loss[i] = 0;
      counts[i] = 0;
    } else {
      loss[i] = fmax(x[i], (Dtype)0) - x[i] * target[i] + log1p(exp(-fabs(x[i])));
      counts[i] = 1;
    }
  }
}
// Per element: dx = w / Z (sigmoid(x) - t), 0 where ignored; w is the loss weight (the
// top's diff) and Z the normalizer, both read on the device.
__kernel void sigmoid_cross_entropy_loss_backward(const int n, __global const Dtype* sigmoid,
                                                  __global const Dtype* target,
                                                  const int has_ignore_label,
                                                  const int ignore_label,
                                                  __global const Dtype* top_diff,
                                                  __global const Dtype* normalizer,
                                                  __global Dtype* bottom_diff) {
  KERNEL_LOOP(i, n) {
    bottom_diff[i] =
        IGNORED(target[i]) ? 0 : top_diff[0] / normalizer[0] * (sigmoid[i] - target[i]);
  }
}
