// BatchNorm, the device twin of minicaffe/layers/batch_norm.py (Caffe's batch_norm_layer.cu).
//
// The bottom is viewed as (num, channels, spatial); channel c's values are
// x[(n * channels + c) * spatial + s]. Caffe reduces with GEMVs against vectors of ones;
// here the training kernels run one work-group per channel (helpers.launch_per_slice):
// its work-items share the channel's num * spatial values, and group_sum joins their
// partial sums. Every kernel may run in place (y == x, dx == dy): a value is read before
// the same work-item overwrites it, and the barriers in group_sum keep every read of
// the sums' passes before any write.
#include "common.cl"

// The position in the blob of the k-th value of channel c.
inline int channel_value(int k, int c, int channels, int spatial) {
  return ((k / spatial) * channels + c) * spatial + k % spatial;
}

// Global statistics, one work-item per channel: the running sums over their weight
// (0 while the weight is 0), and 1 / sqrt(variance + eps).
__kernel void batch_norm_global_stats(const int n, __global const Dtype* running_mean,
                                      __global const Dtype* running_var,
                                      __global const Dtype* weight, const Dtype eps,
                                      __global Dtype* mean, __global Dtype* inv_std) {
  KERNEL_LOOP(c, n) {
    const Dtype factor = weight[0] == 0 ? 0 : 1 / weight[0];
    mean[c] = running_mean[c] * factor;
    inv_std[c] = 1 / sqrt(running_var[c] * factor + eps);
  }
}

// y = (x - mean[c]) * inv_std[c], with global statistics.
__kernel void batch_norm_normalize(const int n, __global const Dtype* x,
                                   __global const Dtype* mean, __global const Dtype* inv_std,
                                   const int channels, const int spatial, __global Dtype* y) {
  KERNEL_LOOP(index, n) {
    const int c = (index / spatial) % channels;
    y[index] = (x[index] - mean[c]) * inv_std[c];
  }
}

// Batch statistics, one work-group per channel: the mean, then the variance about it
// (two passes, as Caffe: E((x - mean)^2) loses less than E(x^2) - mean^2), then
// y = (x - mean) * inv_std, written to the top and to x_norm (kept for backward).
// Work-item 0 of each group updates its channel's running sums, and the first group's
// the weight they share: w = fraction w + 1.
__kernel void batch_norm_train_forward(const int channels, __global const Dtype* x,
                                       const int num, const int spatial, const Dtype fraction,
                                       const Dtype bias_correction, const Dtype eps,
                                       __global Dtype* running_mean,
                                       __global Dtype* running_var, __global Dtype* weight,
                                       __global Dtype* mean, __global Dtype* inv_std,
                                       __global Dtype* y, __global Dtype* x_norm,
                                       __local Dtype* scratch) {
  const int c = get_group_id(0), lid = get_local_id(0), step = get_local_size(0);
  const int m = num * spatial;
  Dtype sum = 0;
  for (int k = lid; k < m; k += step) sum += x[channel_value(k, c, channels, spatial)];
  const Dtype mu = group_sum(sum, scratch) / m;
  sum = 0;
  for (int k = lid; k < m; k += step) {
    const Dtype centred = x[channel_value(k, c, channels, spatial)] - mu;
    sum += centred * centred;
  }
  const Dtype variance = group_sum(sum, scratch) / m;
  const Dtype scale = 1 / sqrt(variance + eps);
  for (int k = lid; k < m; k += step) {
    const int index = channel_value(k, c, channels, spatial);
    y[index] = (x[index] - mu) * scale;
    x_norm[index] = y[index];
  }
  if (lid == 0) {
    mean[c] = mu;
    inv_std[c] = scale;
    running_mean[c] = mu + fraction * running_mean[c];
    running_var[c] = bias_correction * variance + fraction * running_var[c];
    if (c == 0) weight[0] = fraction * weight[0] + 1;
  }
}

// dx = dy * inv_std[c], with global statistics (they are constants).
__kernel void batch_norm_backward_global(const int n, __global const Dtype* dy,
                                         __global const Dtype* inv_std, const int channels,
                                         const int spatial, __global Dtype* dx) {
  KERNEL_LOOP(index, n) { dx[index] = dy[index] * inv_std[(index / spatial) % channels]; }
}

// dx = (dy - mean(dy) - mean(dy * y) * y) * inv_std[c], with batch statistics; one
// work-group per channel takes both means, then writes the channel's dx.
__kernel void batch_norm_train_backward(const int channels, __global const Dtype* dy,
                                        __global const Dtype* y, __global const Dtype* inv_std,
                                        const int num, const int spatial, __global Dtype* dx,
                                        __local Dtype* scratch) {
  const int c = get_group_id(0), lid = get_local_id(0), step = get_local_size(0);
  const int m = num * spatial;
  Dtype sum_dy = 0, sum_dy_y = 0;
  for (int k = lid; k < m; k += step) {
    const int index = channel_value(k, c, channels, spatial);
    sum_dy += dy[index];
    sum_dy_y += dy[index] * y[index];
  }
  const Dtype mean_dy = group_sum(sum_dy, scratch) / m;
  const Dtype mean_dy_y = group_sum(sum_dy_y, scratch) / m;
  for (int k = lid; k < m; k += step) {
    const int index = channel_value(k, c, channels, spatial);
    dx[index] = (dy[index] - mean_dy - mean_dy_y * y[index]) * inv_std[c];
  }
}
