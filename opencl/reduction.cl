// Reduction, the device twin of minicaffe/layers/reduction.py (Caffe's reduction_layer.cu).
//
// The bottom is `num` rows of `dim` values; the top holds one value per row. `op` is
// ReductionParameter's enum: 1 SUM, 2 ASUM, 3 SUMSQ, 4 MEAN (MEAN arrives as SUM with
// coeff already divided by dim).
#include "common.cl"

#define REDUCTION_ASUM 2
#define REDUCTION_SUMSQ 3

// The term a value adds to its row's total.
inline Dtype reduction_term(const Dtype x, const int op) {
  if (op == REDUCTION_ASUM) return fabs(x);
  if (op == REDUCTION_SUMSQ) return x * x;
  return x;  // SUM, MEAN
}

// y[row] = coeff * sum over d of term(x[row][d]). One work-group per row (groups take
// further rows in turn when there are more rows than groups): each work-item adds up
// every local_size-th value of the row, then group_sum (common.cl) adds the work-items'
// parts. Launched as an N-d range: global = groups * local size.
__kernel void reduction_forward(const int num, const int dim, const int op, const Dtype coeff,
                                __global const Dtype* x, __global Dtype* y,
                                __local Dtype* scratch) {
  for (int row = get_group_id(0); row < num; row += get_num_groups(0)) {
    Dtype part = 0;
    for (int d = get_local_id(0); d < dim; d += get_local_size(0)) {
      part += reduction_term(x[row * dim + d], op);
    }
    const Dtype total = group_sum(part, scratch);
    if (get_local_id(0) == 0) y[row] = coeff * total;
  }
}

// dx[i] = coeff * dy[row] * (1, sign(x), or 2x by op); n = bottom count.
__kernel void reduction_backward(const int n, const int dim, const int op, const Dtype coeff,
                                 __global const Dtype* x, __global const Dtype* top_diff,
                                 __global Dtype* bottom_diff) {
  KERNEL_LOOP(i, n) {
    const Dtype scale = coeff * top_diff[i / dim];
    if (op == REDUCTION_ASUM) {
      bottom_diff[i] = scale * (Dtype)((x[i] > 0) - (x[i] < 0));
    } else if (op == REDUCTION_SUMSQ) {
      bottom_diff[i] = 2 * scale * x[i];
    } else {
      bottom_diff[i] = scale;
    }
  }
}
