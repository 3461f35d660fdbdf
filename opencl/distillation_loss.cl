// DistillationLoss, the device twin of minicaffe/layers/distillation_loss.py (a minicaffe
// extension: Hinton et al.'s soft targets at temperature T). Both score blobs are
// (outer, channels, inner) around the class axis; one work-item owns one (outer, inner)
// position and walks its `channels` values, `inner` apart, as softmax.cl does.
#include "common.cl"

// Per position: q = softmax(s / T), p = softmax(t / T), kept for backward, and
// loss = T^2 sum_c p_c (log p_c - log q_c), computed from the log-probabilities so that a
// p_c that underflows to 0 adds 0 rather than 0 * -inf; counts = 1 (every position is
// valid: there are no labels), for loss.cl's normalized total.
__kernel void distillation_loss_forward(const int n, __global const Dtype* student,
                                        __global const Dtype* teacher, const int channels,
                                        const int inner, const Dtype temperature,
                                        __global Dtype* student_prob,
                                        __global Dtype* teacher_prob, __global Dtype* loss,
                                        __global Dtype* counts) {
  KERNEL_LOOP(index, n) {
    const int offset = (index / inner) * channels * inner + index % inner;
    Dtype ms = -INFINITY, mt = -INFINITY;
    for (int c = 0; c < channels; ++c) {
      ms = fmax(ms, student[offset + c * inner] / temperature);
      mt = fmax(mt, teacher[offset + c * inner] / temperature);
    }
    Dtype ss = 0, st = 0;
    for (int c = 0; c < channels; ++c) {
      ss += exp(student[offset + c * inner] / temperature - ms);
      st += exp(teacher[offset + c * inner] / temperature - mt);
    }
    const Dtype log_ss = log(ss), log_st = log(st);
    Dtype kl = 0;
    for (int c = 0; c < channels; ++c) {
      const Dtype log_q = student[offset + c * inner] / temperature - ms - log_ss;
      const Dtype log_p = teacher[offset + c * inner] / temperature - mt - log_st;
      const Dtype p = exp(log_p);
      student_prob[offset + c * inner] = exp(log_q);
      teacher_prob[offset + c * inner] = p;
      kl += p * (log_p - log_q);
    }
    loss[index] = temperature * temperature * kl;
    counts[index] = 1;
  }
}

// Per value: ds = w T / Z (q - p); w is the loss weight (the top's diff) and Z the
// normalizer, both read on the device.
__kernel void distillation_loss_backward(const int n, __global const Dtype* student_prob,
                                         __global const Dtype* teacher_prob,
                                         const Dtype temperature, __global const Dtype* top_diff,
                                         __global const Dtype* normalizer,
                                         __global Dtype* student_diff) {
  KERNEL_LOOP(index, n) {
    student_diff[index] =
        top_diff[0] * temperature / normalizer[0] * (student_prob[index] - teacher_prob[index]);
  }
}
