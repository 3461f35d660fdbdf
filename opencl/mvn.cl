// MVN, the device twin of minicaffe/layers/mvn.py (Caffe's mvn_layer.cu).
// The blob is (groups, dim): one group is a channel of an image, or a whole image.
//   forward:  y = (x - mean) / (std + eps)                 (or y = x - mean)
//   backward: dx = (dy - <dy> - y <y dy>) / (std + eps)     (or dx = dy - <dy>)
// One work-group per group: its work-items take the group's values `local size`
// apart, total their shares with group_sum (common.cl), then write the outputs.
// std + eps is kept per group in `std_eps` (the numpy layer's `variance` blob).
#include "common.cl"

__kernel void mvn_forward(const int dim, const int normalize_variance, const Dtype eps,
                          __global const Dtype* bottom, __global Dtype* std_eps,
                          __global Dtype* top, __local Dtype* scratch) {
  const int group = get_group_id(0);
  const int lid = get_local_id(0), step = get_local_size(0);
  __global const Dtype* x = bottom + group * dim;
  __global Dtype* y = top + group * dim;
  Dtype part = 0;
  for (int i = lid; i < dim; i += step) part += x[i];
  const Dtype mean = group_sum(part, scratch) / dim;
  if (!normalize_variance) {
    for (int i = lid; i < dim; i += step) y[i] = x[i] - mean;
    return;
  }
  part = 0;  // the variance in a second pass, as the mean of squared deviations
  for (int i = lid; i < dim; i += step) part += (x[i] - mean) * (x[i] - mean);
  const Dtype denominator = sqrt(group_sum(part, scratch) / dim) + eps;
  if (lid == 0) std_eps[group] = denominator;
  for (int i = lid; i < dim; i += step) y[i] = (x[i] - mean) / denominator;
}

__kernel void mvn_backward(const int dim, const int normalize_variance,
                           __global const Dtype* top, __global const Dtype* top_diff,
                           __global const Dtype* std_eps, __global Dtype* bottom_diff,
                           __local Dtype* scratch) {
  const int group = get_group_id(0);
  const int lid = get_local_id(0), step = get_local_size(0);
  __global const Dtype* y = top + group * dim;
  __global const Dtype* dy = top_diff + group * dim;
  __global Dtype* dx = bottom_diff + group * dim;
  Dtype part = 0;
  for (int i = lid; i < dim; i += step) part += dy[i];
  const Dtype mean_dy = group_sum(part, scratch) / dim;
  if (!normalize_variance) {
    for (int i = lid; i < dim; i += step) dx[i] = dy[i] - mean_dy;
    return;
  }
  part = 0;
  for (int i = lid; i < dim; i += step) part += y[i] * dy[i];
  const Dtype mean_y_dy = group_sum(part, scratch) / dim;
  for (int i = lid; i < dim; i += step) {
    dx[i] = (dy[i] - mean_dy - y[i] * mean_y_dy) / std_eps[group];
  }
}
