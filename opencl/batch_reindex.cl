// BatchReindex, the device twin of minicaffe/layers/batch_reindex.py (Caffe's
// batch_reindex_layer.cu). Items are `inner` values each; `permut` holds the M indices
// as floats (checked on the host to lie in [0, N)), truncated to int as in Caffe.
#include "common.cl"

// y[m][i] = x[permut[m]][i]; n = top count (M * inner).
__kernel void batch_reindex_forward(const int n, const int inner, __global const Dtype* in,
                                    __global const Dtype* permut, __global Dtype* out) {
  KERNEL_LOOP(index, n) {
    const int source = (int)permut[index / inner];
    out[index] = in[source * inner + index % inner];
  }
}

// dx[item][i] = sum over m with permut[m] == item of dy[m][i]; n = bottom count.
// Each work-item owns one bottom value and scans the M indices for the copies of its
// item: a gather instead of a scatter, so no two work-items write the same place
// (Caffe sorts the indices on the host for the same effect).
__kernel void batch_reindex_backward(const int n, const int inner, const int num_indices,
                                     __global const Dtype* top_diff,
                                     __global const Dtype* permut, __global Dtype* bottom_diff) {
  KERNEL_LOOP(index, n) {
    const int item = index / inner;
    const int offset = index % inner;
    Dtype sum = 0;
    for (int m = 0; m < num_indices; ++m) {
      if ((int)permut[m] == item) sum += top_diff[m * inner + offset];
    }
    bottom_diff[index] = sum;
  }
}
