// The device half of minicaffe/layers/loss.py (LossLayer): the normalized total that
// SoftmaxWithLoss, InfogainLoss and SigmoidCrossEntropyLoss share.
#include "common.cl"

// One work-group: top = sum(loss) / Z, and Z is kept in `normalizer` for backward.
// Z = max(1, number of counted positions) when by_valid_count (VALID normalization),
// else the fixed `fixed_normalizer` that the host worked out from the shape.
__kernel void normalized_loss_total(const int n, __global const Dtype* loss,
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
