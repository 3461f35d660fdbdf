// int8 inference, the device twin of minicaffe/quantize.py: quantize floats to char,
// multiply char matrices with int accumulators, rescale the accumulators to floats.
//
//   q = clip(rint(x * (1/s)), -127, 127)          (1/s rounded to float once, on the host)
//   acc[m, n] = sum_k A[m, k] B(k, n)              (char x char, summed in int)
//   y = (float)acc * (s_x s_w[c]) + bias[c]        (c: the output channel)
//
// No contraction into fused multiply-adds: y is then rounded exactly as numpy rounds it
// (a multiply, then an add), and x * (1/s) is one correctly rounded multiply, so both
// engines give the same integers.
#pragma OPENCL FP_CONTRACT OFF
#include "common.cl"  // typedef float Dtype; KERNEL_LOOP(i, n): grid-stride loop

__kernel void quantize(const int n, __global const Dtype* x, const Dtype inverse_scale,
                       __global char* q) {
  KERNEL_LOOP(i, n) { q[i] = convert_char(clamp(rint(x[i] * inverse_scale), -127.0f, 127.0f)); }
}

// C (M x N, int) = A (M x K, char) B (N x K, char) transposed: every value of C is a dot
// product of two contiguous rows (InnerProduct: X Wᵀ). One work-item per value of C,
// (get_global_id(0), get_global_id(1)) = (n, m); 16 products at a time, widened to int
// before they are multiplied. A product of two chars fits in 15 bits, and K <= 133,144
// (the host checks) keeps every sum inside int.
__kernel void gemm_int8_dots(const int M, const int N, const int K,
                             __global const char* A, const int a_offset,
                             __global const char* B, const int b_offset,
                             __global int* C, const int c_offset) {
  const int n = get_global_id(0), m = get_global_id(1);
  if (m >= M || n >= N) return;
  __global const char* a = A + a_offset + m * K;
  __global const char* b = B + b_offset + n * K;
  int16 sums = 0;
  int k = 0;
  for (; k + 16 <= K; k += 16) sums += convert_int16(vload16(0, a + k)) * convert_int16(vload16(0, b + k));
  int acc = sums.s0 + sums.s1 + sums.s2 + sums.s3 + sums.s4 + sums.s5 + sums.s6 + sums.s7
          + sums.s8 + sums.s9 + sums.sa + sums.sb + sums.sc + sums.sd + sums.se + sums.sf;
  for (; k < K; ++k) acc += a[k] * b[k];  // the last K % 16 (C promotes char * char to int)
  C[c_offset + m * N + n] = acc;
}

// C (M x N, int) = A (M x K, char) B (K x N, char) (Convolution: W times the columns).
// A work-item owns RM rows x 16 columns of C: at each k it reads 16 neighbouring bytes of
// row k of B once and adds them, times one value of A, into each of its RM rows (outer
// products, as gemm.cl's `strips`). Columns past the last whole 16 go one at a time.
#define RM 4
__kernel void gemm_int8_strips(const int M, const int N, const int K,
                               __global const char* A, const int a_offset,
                               __global const char* B, const int b_offset,
                               __global int* C, const int c_offset) {
  const int n0 = get_global_id(0) * 16, m0 = get_global_id(1) * RM;
  if (m0 >= M || n0 >= N) return;
  A += a_offset;
  B += b_offset;
  C += c_offset;
  const int rows = min(RM, M - m0);
  if (n0 + 16 <= N) {
    // Rows past M read row M - 1 again (a fixed trip count unrolls; nothing is stored).
    __global const char* a[RM];
    for (int r = 0; r < RM; ++r) a[r] = A + min(m0 + r, M - 1) * K;
    int16 acc[RM];
    for (int r = 0; r < RM; ++r) acc[r] = 0;
    for (int k = 0; k < K; ++k) {
      const int16 b = convert_int16(vload16(0, B + k * N + n0));
#pragma unroll
      for (int r = 0; r < RM; ++r) acc[r] += (int)a[r][k] * b;
    }
    for (int r = 0; r < rows; ++r) vstore16(acc[r], 0, C + (m0 + r) * N + n0);
  } else {
    for (int n = n0; n < N; ++n) {
      for (int r = 0; r < rows; ++r) {
        int acc = 0;
        for (int k = 0; k < K; ++k) acc += A[(m0 + r) * K + k] * B[k * N + n];
        C[(m0 + r) * N + n] = acc;
      }
    }
  }
}

// InnerProduct: acc and y are (M, channels); the channel is the column.
__kernel void dequantize_columns(const int n, __global const int* acc,
                                 __global const Dtype* scale, __global const Dtype* bias,
                                 const int channels, __global Dtype* y) {
  KERNEL_LOOP(i, n) {
    const int c = i % channels;
    y[i] = (Dtype)acc[i] * scale[c] + bias[c];
  }
}

// Convolution: acc is the GEMM's (channels, num, spatial) from acc_offset; y is the top's
// (num, channels, spatial) from y_offset. One work-item per value of y.
__kernel void dequantize_rows(const int n, __global const int* acc, const int acc_offset,
                              __global const Dtype* scale, __global const Dtype* bias,
                              const int channels, const int num, const int spatial,
                              __global Dtype* y, const int y_offset) {
  KERNEL_LOOP(i, n) {
    const int p = i % spatial;
    const int c = (i / spatial) % channels;
    const int image = i / (spatial * channels);
    y[y_offset + i] = (Dtype)acc[acc_offset + (c * num + image) * spatial + p] * scale[c] + bias[c];
  }
}
