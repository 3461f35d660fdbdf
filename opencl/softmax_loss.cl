// SoftmaxWithLoss, the device twin of minicaffe/layers/softmax_loss.py (Caffe's
// softmax_loss_layer.cu). The probabilities come from softmax.cl; these kernels add the
// loss. prob is (outer, channels, inner); label holds one class per (outer, inner)
// position, as a float that is truncated to int, as Caffe's static_cast does.
#include "common.cl"

// Per position: loss = -log max(p_label, FLT_MIN), count = 1; both 0 where the label
// is ignore_label (only when has_ignore_label).
__kernel void softmax_loss_forward(const int n, __global const Dtype* prob,
                                   __global const Dtype* label, const int channels,
                                   const int inner, const int has_ignore_label,
                                   const int ignore_label, __global Dtype* loss,
                                   __global Dtype* counts) {
  KERNEL_LOOP(index, n) {
    const int label_value = (int)label[index];
    if (has_ignore_label && label_value == ignore_label) {
      loss[index] = 0;
      counts[index] = 0;
    } else {
      const int offset = (index / inner) * channels * inner + index % inner;
      loss[index] = -log(fmax(prob[offset + label_value * inner], FLT_MIN));
      counts[index] = 1;
    }
  }
}
// Per position, over its channels: dx_c = w / Z (p_c - [c = label]), 0 where ignored;
// w is the loss weight (the top's diff) and Z the normalizer, both read on the device.
__kernel void softmax_loss_backward(const int n, __global const Dtype* prob,
                                    __global const Dtype* label, const int channels,
                                    const int inner, const int has_ignore_label,
                                    const int ignore_label, __global const Dtype* top_diff,
                                    __global const Dtype* normalizer,
                                    __global Dtype* bottom_diff) {
  KERNEL_LOOP(index, n) {
    const int label_value = (int)label[index];
    const int offset = (index / inner) * channels * inner + index % inner;
    const int valid = !(has_ignore_label && label_value == ignore_label);
    const Dtype scale = valid ? top_diff[0] / normalizer[0] : 0;
    for (int c = 0; c < channels; ++c) {
      bottom_diff[offset + c * inner] =
          scale * (prob[offset + c * inner] - (c == label_value));
    }
  }
}
