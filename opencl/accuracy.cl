// Accuracy, the device twin of minicaffe/layers/accuracy.py (Caffe's accuracy_layer.cu).
// scores are (outer, channels, inner); label holds one class per (outer, inner)
// position, as a float truncated to int.
#include "common.cl"

// Per position: correct = 1 when fewer than top_k other classes score at least as high
// as the true one (ties count against it); valid = 0 (and correct = 0) where the label
// is ignore_label (only when has_ignore_label).
__kernel void accuracy_forward(const int n, __global const Dtype* scores,
                               __global const Dtype* label, const int channels,
                               const int inner, const int top_k,
                               const int has_ignore_label, const int ignore_label,
                               __global Dtype* correct, __global Dtype* valid) {
  KERNEL_LOOP(index, n) {
    const int label_value = (int)label[index];
    if (has_ignore_label && label_value == ignore_label) {
      correct[index] = 0;
      valid[index] = 0;
    } else {
      const int offset = (index / inner) * channels * inner + index % inner;
      const Dtype true_score = scores[offset + label_value * inner];
      int num_better = -1;  // the true class scores >= itself: don't count it
      for (int c = 0; c < channels && num_better < top_k; ++c) {
        num_better += scores[offset + c * inner] >= true_score;
      }
      correct[index] = num_better < top_k;
      valid[index] = 1;
    }
  }
}

// One work-group: top = sum(correct) / sum(valid), or 0 when nothing counted.
__kernel void accuracy_total(const int n, __global const Dtype* correct,
                             __global const Dtype* valid, __global Dtype* top,
                             __local Dtype* scratch) {
  Dtype correct_part = 0, valid_part = 0;
  KERNEL_LOOP(i, n) {
    correct_part += correct[i];
    valid_part += valid[i];
  }
  const Dtype hits = group_sum(correct_part, scratch);
  const Dtype count = group_sum(valid_part, scratch);
  if (get_local_id(0) == 0) top[0] = count > 0 ? hits / count : 0;
}

// Per class c (n = channels): the accuracy over the counted positions labelled c, or 0
// when there are none. Each work-item scans every position: a few classes times a
// batch of labels, too little work to be worth a reduction tree.
__kernel void accuracy_per_class(const int n, const int positions,
                                 __global const Dtype* label, __global const Dtype* correct,
                                 __global const Dtype* valid, __global Dtype* top) {
  KERNEL_LOOP(c, n) {
    Dtype hits = 0, seen = 0;
    for (int i = 0; i < positions; ++i) {
      if ((int)label[i] == c) {
        hits += correct[i];
        seen += valid[i];
      }
    }
    top[c] = seen > 0 ? hits / seen : 0;
  }
}
