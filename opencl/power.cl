// Power, the device twin of minicaffe/layers/power.py (Caffe's power_layer.cu).
//   y = (scale x + shift)^power        dE/dx = dE/dy diff_scale y / (scale x + shift)
// with diff_scale = power scale. The host fills y (and dE/dx = 0) itself when
// diff_scale is 0, so these kernels only see an x that matters.
#include "common.cl"  // typedef float Dtype; KERNEL_LOOP(i, n): grid-stride loop

__kernel void power_forward(const int n, __global const Dtype* in, __global Dtype* out,
                            const Dtype power, const Dtype scale, const Dtype shift) {
  KERNEL_LOOP(i, n) {
    const Dtype u = in[i] * scale + shift;
    out[i] = power == 1 ? u : pow(u, power);
  }
}

// in_diff = dE/dy, in_data = x, out_data = y, out_diff = dE/dx. The same cases as the
// numpy body: power 1 and 2 have closed forms, shift 0 divides by x rather than scale x.
__kernel void power_backward(const int n, __global const Dtype* in_diff,
                             __global const Dtype* in_data, __global const Dtype* out_data,
                             __global Dtype* out_diff, const Dtype power, const Dtype scale,
                             const Dtype shift, const Dtype diff_scale) {
  KERNEL_LOOP(i, n) {
    const Dtype x = in_data[i];
    Dtype dydx;
    if (power == 1) {
      dydx = diff_scale;
    } else if (power == 2) {
      dydx = x * (diff_scale * scale) + diff_scale * shift;
    } else if (shift == 0) {
      dydx = out_data[i] / x * power;
    } else {
      dydx = out_data[i] / (x * scale + shift) * diff_scale;
    }
    out_diff[i] = in_diff[i] * dydx;
  }
}
