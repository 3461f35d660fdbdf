// Slice, the device twin of minicaffe/layers/slice.py (Caffe's slice_layer.cu).
//
// View every blob as (outer, axis, inner): `outer` is the product of the dims before
// the slice axis, `inner` (slice_size) the product of those after it. Top k
// (outer x top_axis x inner) is the slab [offset, offset + top_axis) along the axis
// of the bottom (outer x bottom_axis x inner). One launch per top, n = its count.
#include "common.cl"

// Where top value i sits in the bottom.
inline int slice_bottom_index(const int i, const int top_axis, const int bottom_axis,
                              const int offset, const int slice_size) {
  const int slab = top_axis * slice_size;  // top values per outer index
  const int outer = i / slab;
  return (outer * bottom_axis + offset) * slice_size + i % slab;
}

// top_data = bottom_data[slab]
__kernel void slice_forward(const int n, __global const Dtype* bottom_data,
                            __global Dtype* top_data, const int top_axis,
                            const int bottom_axis, const int offset, const int slice_size) {
  KERNEL_LOOP(i, n) {
    top_data[i] = bottom_data[slice_bottom_index(i, top_axis, bottom_axis, offset, slice_size)];
  }
}

// bottom_diff[slab] = top_diff
__kernel void slice_backward(const int n, __global const Dtype* top_diff,
                             __global Dtype* bottom_diff, const int top_axis,
                             const int bottom_axis, const int offset, const int slice_size) {
  KERNEL_LOOP(i, n) {
    bottom_diff[slice_bottom_index(i, top_axis, bottom_axis, offset, slice_size)] = top_diff[i];
  }
}
