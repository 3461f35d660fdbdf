// InnerProduct, the device twin of minicaffe/layers/inner_product.py.
//
// The products are gemm.cl's; these two kernels handle the bias, which Caffe does
// with a GEMM against a vector of ones. Y and dE/dY are M x N (M examples of N outputs).
#include "common.cl"

// y[m][j] += bias[j]; n = M * N.
__kernel void inner_product_bias_forward(const int n, __global const Dtype* bias,
                                         const int num_output, __global Dtype* top) {
  KERNEL_LOOP(index, n) { top[index] += bias[index % num_output]; }
}

// bias_diff[j] += sum over m of top_diff[m][j]: one work-item per output j, walking
// down its column, so neighbouring work-items read neighbouring values; n = N.
__kernel void inner_product_bias_backward(const int n, __global const Dtype* top_diff,
                                          const int num, __global Dtype* bias_diff) {
  KERNEL_LOOP(j, n) {
    Dtype sum = 0;
    for (int m = 0; m < num; ++m) sum += top_diff[m * n + j];
    bias_diff[j] += sum;
  }
}
