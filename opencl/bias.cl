// Bias, the device twin of minicaffe/layers/bias.py (Caffe's bias_layer.cu).
//
// The bottom is viewed as (outer, dim, inner) around the bias's axes: value `index`
// sits over bias value (index / inner) % dim.
#include "common.cl"

// y = x + b[d]; may run in place (y == x).
__kernel void bias_forward(const int n, __global const Dtype* x, __global const Dtype* bias,
                           const int dim, const int inner, __global Dtype* y) {
  KERNEL_LOOP(index, n) { y[index] = x[index] + bias[(index / inner) % dim]; }
}

// bias_diff[d] (+)= sum over o, i of dy[o][d][i]. One work-group per bias value d (see
// helpers.launch_per_slice): each work-item adds every local-size-th of the outer*inner
// values, then group_sum joins them. A parameter's gradient accumulates (iter_size); a
// bottom's is overwritten, as for any bottom.
__kernel void bias_backward(const int dim, __global const Dtype* dy, const int outer,
                            const int inner, const int accumulate, __global Dtype* bias_diff,
                            __local Dtype* scratch) {
  const int d = get_group_id(0);
  Dtype sum = 0;
  for (int k = get_local_id(0); k < outer * inner; k += get_local_size(0)) {
    sum += dy[((k / inner) * dim + d) * inner + k % inner];
  }
  sum = group_sum(sum, scratch);
  if (get_local_id(0) == 0) bias_diff[d] = accumulate ? bias_diff[d] + sum : sum;
}
