// Tile, the device twin of minicaffe/layers/tile.py (Caffe's tile_layer.cu).
//
// The bottom is (outer, inner): `inner` values per block (the tile axis and all after
// it). The top is (outer, tiles, inner): every block written `tiles` times in a row.
#include "common.cl"

// y[o][t][i] = x[o][i]; n = top count.
__kernel void tile_forward(const int n, __global const Dtype* bottom_data,
                           __global Dtype* top_data, const int inner, const int tiles) {
  KERNEL_LOOP(index, n) {
    const int outer = index / (tiles * inner);
    top_data[index] = bottom_data[outer * inner + index % inner];
  }
}

// dx[o][i] = sum over t of dy[o][t][i]; n = bottom count, one work-item per bottom value,
// so no two work-items write the same place.
__kernel void tile_backward(const int n, __global const Dtype* top_diff,
                            __global Dtype* bottom_diff, const int inner, const int tiles) {
  KERNEL_LOOP(index, n) {
    const int outer = index / inner;
    const int first = outer * tiles * inner + index % inner;  // copy t = 0 in the top
    Dtype sum = 0;
    for (int t = 0; t < tiles; ++t) sum += top_diff[first + t * inner];
    bottom_diff[index] = sum;
  }
}
