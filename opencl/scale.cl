// Scale, the device twin of minicaffe/layers/scale.py (Caffe's scale_layer.cu).
//
// The bottom is viewed as (outer, dim, inner) around the scale's axes: value `index`
// sits over scale value (index / inner) % dim.
#include "common.cl"

// y = s[d] x; may run in place (y == x). Backward runs it on the diffs: dx = s[d] dy.
__kernel void scale_forward(const int n, __global const Dtype* x, __global const Dtype* scale,
                            const int dim, const int inner, __global Dtype* y) {
  KERNEL_LOOP(index, n) { y[index] = x[index] * scale[(index / inner) % dim]; }
}

// y = s[d] x + b[d] (bias_term): the bias in the same pass.
__kernel void scale_bias_forward(const int n, __global const Dtype* x,
                                 __global const Dtype* scale, __global const Dtype* bias,
                                 const int dim, const int inner, __global Dtype* y) {
  KERNEL_LOOP(index, n) {
    const int d = (index / inner) % dim;
    y[index] = x[index] * scale[d] + bias[d];
  }
}

// diff[d] (+)= sum over o, i of dy[o][d][i] * x[o][d][i] (the scale's gradient), or of
// dy alone when with_x is 0 (the bias's). One work-group per value d (see
// helpers.launch_per_slice): each work-item adds every local-size-th term, then
// group_sum joins them. A parameter's gradient accumulates (iter_size); a bottom's is
// overwritten.
__kernel void scale_param_backward(const int dim, __global const Dtype* dy,
                                   __global const Dtype* x, const int with_x, const int outer,
                                   const int inner, const int accumulate,
                                   __global Dtype* diff, __local Dtype* scratch) {
  const int d = get_group_id(0);
  Dtype sum = 0;
  for (int k = get_local_id(0); k < outer * inner; k += get_local_size(0)) {
    const int index = ((k / inner) * dim + d) * inner + k % inner;
    sum += with_x ? dy[index] * x[index] : dy[index];
  }
  sum = group_sum(sum, scratch);
  if (get_local_id(0) == 0) diff[d] = accumulate ? diff[d] + sum : sum;
}
