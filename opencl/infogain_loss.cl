// InfogainLoss, the device twin of minicaffe/layers/infogain_loss.py (Caffe's
// infogain_loss_layer.cpp, which runs on the host even in GPU mode). The probabilities
// come from softmax.cl (the inner Softmax layer); these kernels add the loss. prob is
// (outer, channels, inner); label holds one class per (outer, inner) position, a float
// truncated to int; H is channels x channels, row = true class.
#include "common.cl"

#define IGNORED(l) (has_ignore_label && (l) == ignore_label)

// Per position: loss = -sum_k H[label, k] log max(p_k, threshold), count = 1; both 0
// where the label is ignored.
__kernel void infogain_loss_forward(const int n, __global const Dtype* prob,
                                    __global const Dtype* label, __global const Dtype* H,
                                    const int channels, const int inner,
                                    const int has_ignore_label, const int ignore_label,
                                    const Dtype threshold, __global Dtype* loss,
                                    __global Dtype* counts) {
  KERNEL_LOOP(index, n) {
    const int label_value = (int)label[index];
    if (IGNORED(label_value)) {
      loss[index] = 0;
      counts[index] = 0;
    } else {
      const int offset = (index / inner) * channels * inner + index % inner;
      Dtype sum = 0;
      for (int k = 0; k < channels; ++k) {
        sum -= H[label_value * channels + k] * log(fmax(prob[offset + k * inner], threshold));
      }
      loss[index] = sum;
      counts[index] = 1;
    }
  }
}
// Per position, over its channels: dx_k = w / Z (p_k sum_k' H[label, k'] - H[label, k]),
// 0 where ignored; w is the loss weight (the top's diff) and Z the normalizer, both read
// on the device. H may be a bottom that changes, so its row sum is taken here each time.
__kernel void infogain_loss_backward(const int n, __global const Dtype* prob,
                                     __global const Dtype* label, __global const Dtype* H,
                                     const int channels, const int inner,
                                     const int has_ignore_label, const int ignore_label,
                                     __global const Dtype* top_diff,
                                     __global const Dtype* normalizer,
                                     __global Dtype* bottom_diff) {
  KERNEL_LOOP(index, n) {
    const int label_value = (int)label[index];
    const int offset = (index / inner) * channels * inner + index % inner;
    if (IGNORED(label_value)) {
      for (int k = 0; k < channels; ++k) bottom_diff[offset + k * inner] = 0;
    } else {
      __global const Dtype* row = H + label_value * channels;
      Dtype row_sum = 0;
      for (int k = 0; k < channels; ++k) row_sum += row[k];
      const Dtype scale = top_diff[0] / normalizer[0];
      for (int k = 0; k < channels; ++k) {
        bottom_diff[offset + k * inner] = scale * (prob[offset + k * inner] * row_sum - row[k]);
      }
    }
  }
}
