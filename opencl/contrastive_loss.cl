// ContrastiveLoss, the device twin of minicaffe/layers/contrastive_loss.py (Caffe's
// contrastive_loss_layer.cu). diff = a - b, of shape (num, channels), comes from
// opencl.sub (math.cl); y holds one similarity per pair, truncated to int (non-zero: similar).
#include "common.cl"

#define DIST_EPS 1e-4f  // keeps the gradient finite when a dissimilar pair coincides

// One work-group over the n pairs: keeps dist_sq = |a - b|^2 per pair for backward and
// writes top = scale * sum of the pair losses, with scale = 1 / 2N. A pair's loss is
// d^2 if similar, else max(margin - d, 0)^2 (legacy: max(margin - d^2, 0)).
__kernel void contrastive_loss_forward(const int n, __global const Dtype* diff,
                                       __global const Dtype* y, const int channels,
                                       const Dtype margin, const int legacy, const Dtype scale,
                                       __global Dtype* dist_sq, __global Dtype* top,
                                       __local Dtype* scratch) {
  Dtype part = 0;
  KERNEL_LOOP(pair, n) {
    Dtype d2 = 0;
    for (int c = 0; c < channels; ++c) d2 += diff[pair * channels + c] * diff[pair * channels + c];
    dist_sq[pair] = d2;
    if ((int)y[pair]) {
      part += d2;
    } else if (legacy) {
      part += fmax(margin - d2, (Dtype)0);
    } else {
      const Dtype apart = fmax(margin - sqrt(d2), (Dtype)0);
      part += apart * apart;
    }
  }
  const Dtype total = group_sum(part, scratch);
  if (get_local_id(0) == 0) top[0] = scale * total;
}

// Per feature value: dE/da (alpha = 1/N) or dE/db (alpha = -1/N), times the loss weight w
// (the top's diff, read on the device). Similar pairs: alpha w diff. Dissimilar pairs
// inside the margin: -alpha w (margin - d) / (d + eps) diff (legacy: -alpha w diff);
// outside it, 0.
__kernel void contrastive_loss_backward(const int n, __global const Dtype* diff,
                                        __global const Dtype* dist_sq, __global const Dtype* y,
                                        const int channels, const Dtype margin, const int legacy,
                                        const Dtype alpha, __global const Dtype* top_diff,
                                        __global Dtype* bottom_diff) {
  KERNEL_LOOP(i, n) {
    const int pair = i / channels;
    Dtype factor;
    if ((int)y[pair]) {
      factor = 1;
    } else if (legacy) {
      factor = margin - dist_sq[pair] > 0 ? -1 : 0;
    } else {
      const Dtype dist = sqrt(dist_sq[pair]);
      const Dtype shortfall = margin - dist;
      factor = shortfall > 0 ? -shortfall / (dist + DIST_EPS) : 0;
    }
    bottom_diff[i] = alpha * top_diff[0] * factor * diff[i];
  }
}
