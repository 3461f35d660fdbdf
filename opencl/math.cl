// Element-wise vector maths and reductions: the device half of Caffe's
// math_functions.cu, called through the helpers in minicaffe/opencl.py
// (opencl.axpy, opencl.scal, opencl.dot, ...). Kernel names are Caffe's (<op>_kernel);
// the suffix also keeps them clear of OpenCL built-ins such as exp, sign and abs.
#include "common.cl"

// y[offset + i] = alpha (caffe_gpu_set; opencl.fill)
__kernel void set_kernel(const int n, const Dtype alpha, __global Dtype* y, const int offset) {
  KERNEL_LOOP(i, n) { y[offset + i] = alpha; }
}

// y += alpha, element-wise (caffe_gpu_add_scalar)
__kernel void add_scalar_kernel(const int n, const Dtype alpha, __global Dtype* y) {
  KERNEL_LOOP(i, n) { y[i] += alpha; }
}

// y = alpha * x + y (caffe_gpu_axpy: the solver's `data -= lr * diff`)
__kernel void axpy_kernel(const int n, const Dtype alpha, __global const Dtype* x,
                   __global Dtype* y) {
  KERNEL_LOOP(i, n) { y[i] += alpha * x[i]; }
}

// y = alpha * x + beta * y (caffe_gpu_axpby: momentum updates)
__kernel void axpby_kernel(const int n, const Dtype alpha, __global const Dtype* x,
                    const Dtype beta, __global Dtype* y) {
  KERNEL_LOOP(i, n) { y[i] = alpha * x[i] + beta * y[i]; }
}

// x = alpha * x (caffe_gpu_scal)
__kernel void scal_kernel(const int n, const Dtype alpha, __global Dtype* x) {
  KERNEL_LOOP(i, n) { x[i] *= alpha; }
}

// Binary element-wise operations: y = a (op) b. y may alias a or b.
__kernel void add_kernel(const int n, __global const Dtype* a, __global const Dtype* b,
                  __global Dtype* y) {
  KERNEL_LOOP(i, n) { y[i] = a[i] + b[i]; }
}

__kernel void sub_kernel(const int n, __global const Dtype* a, __global const Dtype* b,
                  __global Dtype* y) {
  KERNEL_LOOP(i, n) { y[i] = a[i] - b[i]; }
}

__kernel void mul_kernel(const int n, __global const Dtype* a, __global const Dtype* b,
                  __global Dtype* y) {
  KERNEL_LOOP(i, n) { y[i] = a[i] * b[i]; }
}

__kernel void div_kernel(const int n, __global const Dtype* a, __global const Dtype* b,
                   __global Dtype* y) {
  KERNEL_LOOP(i, n) { y[i] = a[i] / b[i]; }
}

// Unary element-wise operations: y = f(a).
__kernel void powx_kernel(const int n, __global const Dtype* a, const Dtype alpha,
                   __global Dtype* y) {
  KERNEL_LOOP(i, n) { y[i] = pow(a[i], alpha); }
}

__kernel void exp_kernel(const int n, __global const Dtype* a, __global Dtype* y) {
  KERNEL_LOOP(i, n) { y[i] = exp(a[i]); }
}

__kernel void abs_kernel(const int n, __global const Dtype* a, __global Dtype* y) {
  KERNEL_LOOP(i, n) { y[i] = fabs(a[i]); }
}

__kernel void sqr_kernel(const int n, __global const Dtype* a, __global Dtype* y) {
  KERNEL_LOOP(i, n) { y[i] = a[i] * a[i]; }
}

// sign(0) = 0, as Caffe's caffe_sign: (0 < x) - (x < 0).
__kernel void sign_kernel(const int n, __global const Dtype* a, __global Dtype* y) {
  KERNEL_LOOP(i, n) { y[i] = (Dtype)((Dtype)0 < a[i]) - (Dtype)(a[i] < (Dtype)0); }
}

// ---- Reductions: sum, asum (sum of |x|), sumsq (sum of x^2) and dot (sum of x*y).
//
// One pass, two levels. Each work-item adds up its share of the terms (the
// grid-stride KERNEL_LOOP), then the work-group adds up its work-items' totals in
// local memory as a tree: the first half adds in the second half (64 adds for a
// group of 128), then 32, ..., 1, with a barrier between rounds so that every
// partner's value is written before it is read. Work-item 0 writes the
// group's total to partial[group]; the host adds the few group totals (in double).
// The local size must be a power of two (the host launches 128 or less).
#define REDUCE_SUM 0
#define REDUCE_ASUM 1
#define REDUCE_SUMSQ 2
#define REDUCE_DOT 3

__kernel void reduce_kernel(const int n, const int op, __global const Dtype* x,
                     __global const Dtype* y, __global Dtype* partial,
                     __local Dtype* scratch) {
  Dtype total = 0;
  KERNEL_LOOP(i, n) {
    const Dtype v = x[i];
    total += op == REDUCE_SUM ? v
           : op == REDUCE_ASUM ? fabs(v)
           : op == REDUCE_SUMSQ ? v * v
           : v * y[i];
  }
  const int lid = get_local_id(0);
  scratch[lid] = total;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = get_local_size(0) / 2; s > 0; s /= 2) {
    if (lid < s) scratch[lid] += scratch[lid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (lid == 0) partial[get_group_id(0)] = scratch[0];
}
