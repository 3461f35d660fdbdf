// PReLU, the device twin of minicaffe/layers/prelu.py (Caffe's prelu_layer.cu).
//   y = x > 0 ? x : a_c x              dE/dx = dE/dy (x > 0 ? 1 : a_c)
//   dE/da_c += sum over the values of slope c of dE/dy x [x <= 0]
// The blob is seen as (num, slopes, inner): slope c covers `inner` consecutive values of
// every example (one channel's positions, or the whole example when channel_shared,
// where slopes = 1). So value i belongs to slope (i / inner) % slopes.
#include "common.cl"  // typedef float Dtype; KERNEL_LOOP(i, n): grid-stride loop; group_sum

__kernel void prelu_forward(const int n, __global const Dtype* in, __global Dtype* out,
                            __global const Dtype* slope, const int slopes, const int inner) {
  KERNEL_LOOP(i, n) {
    const Dtype x = in[i];
    out[i] = x > 0 ? x : x * slope[(i / inner) % slopes];  // NaN stays NaN, as in numpy
  }
}

// in_diff = dE/dy, in_data = x (the saved copy when in place), out_diff = dE/dx.
__kernel void prelu_backward(const int n, __global const Dtype* in_diff,
                             __global const Dtype* in_data, __global Dtype* out_diff,
                             __global const Dtype* slope, const int slopes, const int inner) {
  KERNEL_LOOP(i, n) {
    const Dtype a = slope[(i / inner) % slopes];
    const Dtype x = in_data[i];
    out_diff[i] = in_diff[i] * ((x > 0) + a * (x <= 0));
  }
}

// One work-group per slope c (group id): its work-items share out the num * inner terms
// of slope c, then group_sum adds their totals and work-item 0 adds the sum to the
// slope's diff. Launched with an explicit range of slopes * group size, not KERNEL_LOOP.
__kernel void prelu_slope_backward(const int num, const int slopes, const int inner,
                                   __global const Dtype* in_diff, __global const Dtype* in_data,
                                   __global Dtype* slope_diff, __local Dtype* scratch) {
  const int c = get_group_id(0);
  Dtype part = 0;
  for (int k = get_local_id(0); k < num * inner; k += get_local_size(0)) {
    const int i = ((k / inner) * slopes + c) * inner + k % inner;  // example k / inner
    const Dtype x = in_data[i];
    part += in_diff[i] * x * (x <= 0);
  }
  const Dtype total = group_sum(part, scratch);
  if (get_local_id(0) == 0) slope_diff[c] += total;
}
