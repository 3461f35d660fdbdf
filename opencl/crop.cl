// Crop, the device twin of minicaffe/layers/crop.py (Caffe's crop_layer.cu).
//
// The top is a box of bottom 0: y[j] = x[j + offset], axis by axis. Both blobs are
// row-major, so a row of the top (its last axis) is one contiguous run in each.
// One work-item per top row (n = top count / row length): it splits its row index
// into coordinates along the other axes and walks them to where the row starts in x.
//
// `geometry` holds 3 * num_axes ints: the top's sizes, x's strides (values per step
// along each axis) and the offsets, axis by axis.
#include "common.cl"

// Where top row `row` starts in x.
int crop_source(int row, const int num_axes, __global const int* geometry) {
  __global const int* size = geometry;
  __global const int* stride = geometry + num_axes;
  __global const int* offset = geometry + 2 * num_axes;
  int start = offset[num_axes - 1];  // the row's first column
  for (int a = num_axes - 2; a >= 0; --a) {  // the last axis is the row itself
    start += (row % size[a] + offset[a]) * stride[a];
    row /= size[a];
  }
  return start;
}

// y = the crop of x.
__kernel void crop_forward(const int n, __global const Dtype* x, __global Dtype* y,
                           const int num_axes, __global const int* geometry) {
  const int width = geometry[num_axes - 1];
  KERNEL_LOOP(row, n) {
    __global const Dtype* src = x + crop_source(row, num_axes, geometry);
    __global Dtype* dst = y + row * width;
    for (int i = 0; i < width; ++i) dst[i] = src[i];
  }
}

// dx (zeroed by the host) gets dy back in the box. Rows never overlap: no atomics.
__kernel void crop_backward(const int n, __global const Dtype* dy, __global Dtype* dx,
                            const int num_axes, __global const int* geometry) {
  const int width = geometry[num_axes - 1];
  KERNEL_LOOP(row, n) {
    __global const Dtype* src = dy + row * width;
    __global Dtype* dst = dx + crop_source(row, num_axes, geometry);
    for (int i = 0; i < width; ++i) dst[i] = src[i];
  }
}
