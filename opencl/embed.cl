// Embed, the device twin of minicaffe/layers/embed.py (Caffe's embed_layer.cu).
//
// The M bottom values are row indices into the weight W (K x N), stored as floats and
// checked on the host to be whole numbers in [0, K). The top is M x N.
#include "common.cl"

// y[m][d] = W[index_m][d] (+ bias[d]); n = M * N. `bias` is only read when has_bias.
__kernel void embed_forward(const int n, __global const Dtype* indices,
                            __global const Dtype* weight, __global const Dtype* bias,
                            const int has_bias, const int num_output, __global Dtype* top) {
  KERNEL_LOOP(index, n) {
    const int d = index % num_output;
    const int row = (int)indices[index / num_output];
    top[index] = weight[row * num_output + d] + (has_bias ? bias[d] : 0);
  }
}

// dW[k][d] += sum over m with index_m == k of dy[m][d]; n = K * N, one work-item per
// weight value. Walking all M indices per value is a gather: each weight value has
// exactly one writer, so repeated indices need no atomic adds.
__kernel void embed_weight_backward(const int n, __global const Dtype* indices,
                                    __global const Dtype* top_diff, const int num,
                                    const int num_output, __global Dtype* weight_diff) {
  KERNEL_LOOP(index, n) {
    const int k = index / num_output;
    const int d = index % num_output;
    Dtype sum = 0;
    for (int m = 0; m < num; ++m) {
      if ((int)indices[m] == k) sum += top_diff[m * num_output + d];
    }
    weight_diff[index] += sum;
  }
}

// db[d] += sum over m of dy[m][d]; n = N, one work-item per column.
__kernel void embed_bias_backward(const int n, __global const Dtype* top_diff, const int num,
                                  __global Dtype* bias_diff) {
  KERNEL_LOOP(d, n) {
    Dtype sum = 0;
    for (int m = 0; m < num; ++m) sum += top_diff[m * n + d];
    bias_diff[d] += sum;
  }
}
