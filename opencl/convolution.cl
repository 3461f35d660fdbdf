// Convolution, the device twin of minicaffe/layers/convolution.py.
//
// The products themselves are gemm.cl's, the column matrices im2col.cl's. What is
// left is layout: on the device the layer convolves a whole batch of images with one
// GEMM per group, so its result comes out channel-major, (K, num, P) for K output
// channels and P output pixels per image, while blobs are image-major, (num, K, P).
// These two kernels move between the layouts. Each work-item copies one run of P
// contiguous values (one channel of one image): n = num * K runs.
#include "common.cl"

// top[i][k][:] = out[k][i][:] + bias[k]: the GEMM's result into the top blob, adding
// the bias on the way (Caffe adds it with a second GEMM, against a vector of ones).
// With bias_term == 0 no bias is added and `bias` may be any buffer.
__kernel void conv_to_images(const int n, __global const Dtype* out, const int channels,
                             const int plane, __global const Dtype* bias, const int bias_term,
                             __global Dtype* top, const int top_offset) {
  const int num = n / channels;
  KERNEL_LOOP(run, n) {  // run = i * channels + k, its place in the top
    const int k = run % channels, i = run / channels;
    __global const Dtype* src = out + (k * num + i) * plane;
    __global Dtype* dst = top + top_offset + run * plane;
    const Dtype b = bias_term ? bias[k] : 0;
    for (int q = 0; q < plane; ++q) dst[q] = src[q] + b;
  }
}

// out[k][i][:] = top_diff[i][k][:]: the top diff into the GEMM's layout, for backward.
__kernel void conv_to_channels(const int n, __global const Dtype* top_diff, const int top_offset,
                               const int channels, const int plane, __global Dtype* out) {
  const int num = n / channels;
  KERNEL_LOOP(run, n) {  // run = k * num + i, its place in out
    const int i = run % num, k = run / num;
    __global const Dtype* src = top_diff + top_offset + (i * channels + k) * plane;
    __global Dtype* dst = out + run * plane;
    for (int q = 0; q < plane; ++q) dst[q] = src[q];
  }
}
