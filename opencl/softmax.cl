// Softmax, the device twin of minicaffe/layers/softmax.py (Caffe's softmax_layer.cu).
//
// The blob is (outer, channels, inner) around the softmax axis. One work-item owns one
// (outer, inner) position and walks its `channels` values, `inner` apart; Caffe splits
// the same work into kernel_channel_max/_subtract/exp/_sum/_div launches, fused here
// into one kernel per direction. Both may run in place (y == x, dx == dy): each
// work-item reads its own values before it overwrites them.
#include "common.cl"

// y_k = exp(x_k - m) / sum_j exp(x_j - m), m = max_j x_j
__kernel void softmax_forward(const int n, __global const Dtype* x, __global Dtype* y,
                              const int channels, const int inner) {
  KERNEL_LOOP(index, n) {
    const int offset = (index / inner) * channels * inner + index % inner;
    Dtype m = -INFINITY;  // fmax skips NaN, as Caffe's max does
    for (int c = 0; c < channels; ++c) m = fmax(m, x[offset + c * inner]);
    Dtype sum = 0;
    for (int c = 0; c < channels; ++c) {
      y[offset + c * inner] = exp(x[offset + c * inner] - m);
      sum += y[offset + c * inner];
    }
    for (int c = 0; c < channels; ++c) y[offset + c * inner] /= sum;
  }
}

// dx_k = y_k (dy_k - sum_j dy_j y_j)
__kernel void softmax_backward(const int n, __global const Dtype* y, __global const Dtype* dy,
                               __global Dtype* dx, const int channels, const int inner) {
  KERNEL_LOOP(index, n) {
    const int offset = (index / inner) * channels * inner + index % inner;
    Dtype dot = 0;
    for (int c = 0; c < channels; ++c) dot += dy[offset + c * inner] * y[offset + c * inner];
    for (int c = 0; c < channels; ++c) {
      dx[offset + c * inner] = y[offset + c * inner] * (dy[offset + c * inner] - dot);
    }
  }
}
