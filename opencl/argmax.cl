// ArgMax, the device twin of minicaffe/layers/argmax.py (Caffe runs its CPU code on GPU).
//
// The bottom is (outer, dim, inner): `dim` values to rank, `inner` apart, for each of
// outer * inner positions; one work-item per position. Pairs (value, index) are ranked
// in descending order, so equal values put the larger index first.
#include "common.cl"

// (a, i) ranks above (b, j)?
inline bool argmax_above(const Dtype a, const int i, const Dtype b, const int j) {
  return a > b || (a == b && i > j);
}

// Pick the largest pair, then the largest pair ranked below the last pick, top_k times.
// Output: with `pairs` (no axis, out_max_val) the top is (outer, 2, top_k): indices then
// values; otherwise (outer, top_k, inner) holding the values if out_max_val, else the
// indices.
__kernel void argmax_forward(const int n, __global const Dtype* x, const int dim,
                             const int inner, const int top_k, const int out_max_val,
                             const int pairs, __global Dtype* y) {
  KERNEL_LOOP(position, n) {
    const int outer = position / inner;
    const int offset = outer * dim * inner + position % inner;
    Dtype last_value = INFINITY;
    int last_index = dim;  // (inf, dim) ranks above every pair
    for (int j = 0; j < top_k; ++j) {
      int best = -1;
      Dtype best_value = 0;
      for (int i = 0; i < dim; ++i) {
        const Dtype v = x[offset + i * inner];
        if (argmax_above(last_value, last_index, v, i) &&
            (best < 0 || argmax_above(v, i, best_value, best))) {
          best = i;
          best_value = v;
        }
      }
      if (pairs) {
        y[(outer * 2) * top_k + j] = best;
        y[(outer * 2 + 1) * top_k + j] = best_value;
      } else {
        y[(outer * top_k + j) * inner + position % inner] = out_max_val ? best_value : best;
      }
      last_value = best_value;
      last_index = best;
    }
  }
}
