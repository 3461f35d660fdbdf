// Concat, the device twin of minicaffe/layers/concat.py (Caffe's concat_layer.cu).
//
// View every blob as (outer, axis, inner): `outer` is the product of the dims before
// the concat axis, `inner` (concat_size) the product of those after it. Bottom k
// (outer x bottom_axis x inner) is then the slab [offset, offset + bottom_axis) along
// the axis of the top (outer x top_axis x inner). One launch per bottom, n = its count.
#include "common.cl"  // typedef float Dtype; KERNEL_LOOP(i, n): grid-stride loop

// Where bottom value i sits in the top.
inline int concat_top_index(const int i, const int bottom_axis, const int top_axis,
                            const int offset, const int concat_size) {
  const int slab = bottom_axis * concat_size;  // bottom values per outer index
  const int outer = i / slab;
  return (outer * top_axis + offset) * concat_size + i % slab;
}

// top_data[slab] = bottom_data
__kernel void concat_forward(const int n, __global const Dtype* bottom_data,
                             __global Dtype* top_data, const int bottom_axis,
                             const int top_axis, const int offset, const int concat_size) {
  KERNEL_LOOP(i, n) {
    top_data[concat_top_index(i, bottom_axis, top_axis, offset, concat_size)] = bottom_data[i];
  }
}

// bottom_diff = top_diff[slab]
__kernel void concat_backward(const int n, __global const Dtype* top_diff,
                              __global Dtype* bottom_diff, const int bottom_axis,
                              const int top_axis, const int offset, const int concat_size) {
  KERNEL_LOOP(i, n) {
    bottom_diff[i] = top_diff[concat_top_index(i, bottom_axis, top_axis, offset, concat_size)];
  }
}
