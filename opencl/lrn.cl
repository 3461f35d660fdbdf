// LRN, the device twin of minicaffe/layers/lrn.py (Caffe's lrn_layer.cu).
//   s_i = shift + alpha_over_m * sum_{j in W(i)} x_j^2        y_i = x_i s_i^-beta
//   dx_i = dy_i s_i^-beta - cache_ratio * x_i * sum_{j in W(i)} dy_j y_j / s_j
// with W(i) the window of `size` channels (ACROSS_CHANNELS) or size x size pixels
// (WITHIN_CHANNEL) centred on i, clipped to the blob, m its full size (n or n^2) and
// cache_ratio = 2 alpha beta / m. One work-item per value: each sums its own window
// (a handful of loads), so even a batch of one keeps every work-item busy; Caffe's
// LRNFillScale gives one thread a pixel and walks its channels with a running sum.
//
// Windows are summed in numpy's window_sum order, so both engines round alike: the
// centre, then the neighbours at distance 1 (before, after), 2, ...; WITHIN_CHANNEL
// first sums each column of the window down its rows, then adds the columns so.
#include "common.cl"

// The term a window adds up at flat index k: x_k^2 forward, dy_k y_k / s_k backward.
// (`square` is named, so the compiler cannot fuse it into the sum as an fma, which
// would round differently from numpy.)
inline Dtype forward_term(__global const Dtype* x, const int k) {
  const Dtype square = x[k] * x[k];
  return square;
}

inline Dtype backward_term(__global const Dtype* dy, __global const Dtype* y,
                           __global const Dtype* scale, const int k) {
  return dy[k] * y[k] / scale[k];
}

// The window sum along one axis: positions centre +- pre_pad within [0, length), the
// position p at flat index base + p * step. `backward` picks the term.
inline Dtype line_sum(const bool backward, __global const Dtype* a, __global const Dtype* b,
                      __global const Dtype* c, const int base, const int step,
                      const int centre, const int pre_pad, const int length) {
#define TERM(p) (backward ? backward_term(a, b, c, base + (p) * step) \
                          : forward_term(a, base + (p) * step))
  Dtype sum = TERM(centre);
  for (int d = 1; d <= pre_pad; ++d) {
    if (centre - d >= 0) sum += TERM(centre - d);
    if (centre + d < length) sum += TERM(centre + d);
  }
  return sum;
#undef TERM
}

// The window sum of value i: over channels, or over rows then columns. x, y and scale
// are (N, C, H, W); for the forward term only `a` (= x) is read.
inline Dtype window_sum(const bool across, const bool backward, __global const Dtype* a,
                        __global const Dtype* b, __global const Dtype* c, const int i,
                        const int channels, const int height, const int width,
                        const int pre_pad) {
  const int plane = height * width;
  if (across) {
    const int ch = (i / plane) % channels;
    return line_sum(backward, a, b, c, i - ch * plane, plane, ch, pre_pad, channels);
  }
  const int w = i % width;
  const int h = (i / width) % height;
  const int corner = i - h * width - w;  // pixel (0, 0) of this channel
  // column ww of the window, summed down its rows
#define COLUMN(ww) line_sum(backward, a, b, c, corner + (ww), width, h, pre_pad, height)
  Dtype sum = COLUMN(w);
  for (int d = 1; d <= pre_pad; ++d) {
    if (w - d >= 0) sum += COLUMN(w - d);
    if (w + d < width) sum += COLUMN(w + d);
  }
  return sum;
#undef COLUMN
}

// s^-beta, faster than pow(), which dominated the layer on PoCL (24 ms of AlexNet's
// norm1 at batch 1): beta = 0.75, the value of every LRN in CaffeNet, AlexNet and
// GoogLeNet, as s^-1/2 (s^-1/2)^1/2 (1.4 ms), any other as exp(-beta log s) (8 ms).
// Both are within a few ulps of pow for s > 0, which a positive k or WITHIN_CHANNEL's
// shift of 1 guarantees; s = 0 gives inf and s < 0 (only with k < 0) NaN, as pow does
// for a non-integer beta.
inline Dtype power(const Dtype s, const Dtype negative_beta) {
  if (negative_beta == -0.75f) {
    const Dtype r = rsqrt(s);
    return r * sqrt(r);
  }
  return exp(negative_beta * log(s));
}

// scale = shift + alpha_over_m * (window sum of x^2), y = x scale^-beta
__kernel void lrn_forward(const int n, __global const Dtype* x, const int across,
                          const int channels, const int height, const int width,
                          const int size, const Dtype alpha_over_m, const Dtype shift,
                          const Dtype negative_beta, __global Dtype* scale,
                          __global Dtype* y) {
  KERNEL_LOOP(i, n) {
    const Dtype sum = window_sum(across, false, x, x, x, i, channels, height, width,
                                 (size - 1) / 2);
    scale[i] = shift + alpha_over_m * sum;
    y[i] = x[i] * power(scale[i], negative_beta);
  }
}

// dx = dy scale^-beta - cache_ratio x (window sum of dy y / scale)
__kernel void lrn_backward(const int n, __global const Dtype* x, __global const Dtype* y,
                           __global const Dtype* scale, __global const Dtype* dy,
                           const int across, const int channels, const int height,
                           const int width, const int size, const Dtype negative_beta,
                           const Dtype cache_ratio, __global Dtype* dx) {
  KERNEL_LOOP(i, n) {
    const Dtype sum = window_sum(across, true, dy, y, scale, i, channels, height, width,
                                 (size - 1) / 2);
    dx[i] = dy[i] * power(scale[i], negative_beta) - cache_ratio * x[i] * sum;
  }
}
