// Convolution, the device twin of minicaffe/layers/convolution.py, and of the helpers
// it shares with Deconvolution in minicaffe/layers/base_conv.py.
//
// The products themselves are gemm.cl's, the column matrices im2col.cl's. What is
// left is layout and the bias: on the device a whole batch of images is convolved
// with one GEMM per group, so its result comes out channel-major, (K, num, P) for K
// channels and P pixels per image, while blobs are image-major, (num, K, P). Each
// work-item here handles one run of P contiguous values (one channel of one image):
// n = num * K runs.
#include "common.cl"

// y[i][k][:] = out[k][i][:]: the GEMM's result into its blob (a Convolution's top).
__kernel void conv_to_images(const int n, __global const Dtype* out, const int channels,
                             const int plane, __global Dtype* y, const int y_offset) {
  const int num = n / channels;
  KERNEL_LOOP(run, n) {  // run = i * channels + k, its place in y
    const int k = run % channels, i = run / channels;
    __global const Dtype* src = out + (k * num + i) * plane;
    __global Dtype* dst = y + y_offset + run * plane;
    for (int q = 0; q < plane; ++q) dst[q] = src[q];
  }
}

// out[k][i][:] = dy[i][k][:]: a diff of that blob (a Convolution's top diff) into the
// GEMM's layout, for backward.
__kernel void conv_to_channels(const int n, __global const Dtype* dy, const int dy_offset,
                               const int channels, const int plane, __global Dtype* out) {
  const int num = n / channels;
  KERNEL_LOOP(run, n) {  // run = k * num + i, its place in out
    const int i = run % num, k = run / num;
    __global const Dtype* src = dy + dy_offset + (i * channels + k) * plane;
    __global Dtype* dst = out + run * plane;
    for (int q = 0; q < plane; ++q) dst[q] = src[q];
  }
}

// The bias, which Caffe adds and sums with GEMMs against a vector of ones.
// top[i][k][:] += bias[k]; n = num * channels runs.
__kernel void conv_bias_forward(const int n, __global const Dtype* bias, const int channels,
                                const int plane, __global Dtype* top) {
  KERNEL_LOOP(run, n) {  // run = i * channels + k
    const Dtype b = bias[run % channels];
    __global Dtype* dst = top + run * plane;
    for (int q = 0; q < plane; ++q) dst[q] += b;
  }
}

// bias_diff[k] += the sum of dy[i][k][:] over all images i: one work-item per channel
// k (n = channels), walking its num runs of P contiguous values. Four partial sums, so
// that an add need not wait for the one before it: 2.5x faster under PoCL on LeNet.
__kernel void conv_bias_backward(const int n, __global const Dtype* dy, const int num,
                                 const int plane, __global Dtype* bias_diff) {
  KERNEL_LOOP(k, n) {
    Dtype s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int i = 0; i < num; ++i) {
      __global const Dtype* src = dy + (i * n + k) * plane;
      int q = 0;
      for (; q + 4 <= plane; q += 4) {
        s0 += src[q]; s1 += src[q + 1]; s2 += src[q + 2]; s3 += src[q + 3];
      }
      for (; q < plane; ++q) s0 += src[q];
    }
    bias_diff[k] += (s0 + s1) + (s2 + s3);
  }
}
