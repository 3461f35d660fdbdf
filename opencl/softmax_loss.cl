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

// One work-group: top = sum(loss) / Z, and Z is kept in `normalizer` for backward.
// Z = max(1, number of counted positions) when by_valid_count (VALID normalization),
// else the fixed `fixed_normalizer` that the host worked out from the shape.
__kernel void softmax_loss_total(const int n, __global const Dtype* loss,
                                 __global const Dtype* counts, const int by_valid_count,
                                 const Dtype fixed_normalizer, __global Dtype* top,
                                 __global Dtype* normalizer, __local Dtype* scratch) {
  Dtype loss_part = 0, count_part = 0;
  KERNEL_LOOP(i, n) {
    loss_part += loss[i];
    count_part += counts[i];
  }
  const Dtype total = group_sum(loss_part, scratch);
  const Dtype count = group_sum(count_part, scratch);
  if (get_local_id(0) == 0) {
    const Dtype z = by_valid_count ? fmax(count, (Dtype)1) : fixed_normalizer;
    top[0] = total / z;
    normalizer[0] = z;
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
