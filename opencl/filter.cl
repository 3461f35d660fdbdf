// Filter, the device twin of minicaffe/layers/filter.py (Caffe's filter_layer.cu).
//
// Items are `inner` values each. The selector holds one value per item; an item is kept
// where it is nonzero. Indices are stored as floats in Blobs, like every other value.
#include "common.cl"

// Run by ONE work-item (n = 1): walk the selector once and write
//   selected[j] = the j-th kept item,   place[item] = its row in the top, or -1.
// A sequential scan over the batch: short, and it keeps the kept items in order.
__kernel void filter_indices(const int n, const int items, __global const Dtype* selector,
                             __global Dtype* selected, __global Dtype* place) {
  KERNEL_LOOP(unused, n) {
    int kept = 0;
    for (int item = 0; item < items; ++item) {
      if (selector[item] != 0) {  // NaN is nonzero, as in C
        selected[kept] = item;
        place[item] = kept++;
      } else {
        place[item] = -1;
      }
    }
  }
}

// y[j][i] = x[selected[j]][i]; n = top count.
__kernel void filter_forward(const int n, const int inner, __global const Dtype* bottom_data,
                             __global const Dtype* selected, __global Dtype* top_data) {
  KERNEL_LOOP(index, n) {
    const int item = (int)selected[index / inner];
    top_data[index] = bottom_data[item * inner + index % inner];
  }
}

// dx[item][i] = dy[place[item]][i], or 0 for an item left out; n = bottom count.
__kernel void filter_backward(const int n, const int inner, __global const Dtype* top_diff,
                              __global const Dtype* place, __global Dtype* bottom_diff) {
  KERNEL_LOOP(index, n) {
    const int row = (int)place[index / inner];
    bottom_diff[index] = row < 0 ? 0 : top_diff[row * inner + index % inner];
  }
}
