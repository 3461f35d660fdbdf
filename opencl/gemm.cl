// GEMM: C = alpha * op(A) * op(B) + beta * C, row-major, as Caffe's caffe_gpu_gemm.
//
//   op(A) is M x K: A itself (stored M x K, row stride K) or, with trans_a, the
//         transpose of an array stored K x M (row stride M).
//   op(B) is K x N: B (stored K x N) or, with trans_b, the transpose of N x K.
//   C     is M x N, row stride N.
// Each matrix starts `*_offset` values into its buffer (a layer's im2col columns
// for image 3, say), because OpenCL buffers cannot be offset like C pointers.
// beta == 0 means C is written without being read, as in BLAS: C may hold garbage.
#include "common.cl"

// The tile side: work-groups are TILE x TILE work-items. The host defines it per
// device (-D TILE=16 on GPUs, 8 on CPUs and on devices with small work-groups).
#ifndef TILE
#define TILE 16
#endif

// Element (i, k) of op(A) and (k, j) of op(B), whatever the storage order.
#define OP_A(i, k) (trans_a ? A[a_offset + (k) * M + (i)] : A[a_offset + (i) * K + (k)])
#define OP_B(k, j) (trans_b ? B[b_offset + (j) * K + (k)] : B[b_offset + (k) * N + (j)])

// Why tiles: the naive kernel (one work-item per C element, a K-long loop) reads
// every value of A N times and every value of B M times from global memory. Here a
// work-group owns a TILE x TILE block of C. It walks along K one TILE-wide step at a
// time: the group first copies a TILE x TILE block of op(A) and one of op(B) into
// fast local memory (each work-item copies one value of each), waits at a barrier,
// then every work-item does TILE multiply-adds reading only local memory. Global
// reads drop by a factor of TILE.
//
// Edges: for any M, N, K the host rounds the range up to whole tiles; loads from
// outside op(A)/op(B) put 0 in the tile (adding 0 * x changes nothing), and
// work-items outside C compute but do not write. They must still take part in the
// loads and barriers, so the bounds tests sit around the loads and the store only.
__kernel __attribute__((reqd_work_group_size(TILE, TILE, 1)))
void gemm_tiled(const int M, const int N, const int K, const Dtype alpha,
                __global const Dtype* A, const int a_offset, const int trans_a,
                __global const Dtype* B, const int b_offset, const int trans_b,
                const Dtype beta, __global Dtype* C, const int c_offset) {
  const int tx = get_local_id(0), ty = get_local_id(1);
  const int row0 = get_group_id(1) * TILE, col0 = get_group_id(0) * TILE;
  const int row = row0 + ty, col = col0 + tx;  // this work-item's element of C

  // a_tile[r][k] = op(A)[row0 + r][k0 + k]; b_tile[k][c] = op(B)[k0 + k][col0 + c].
  // The +1 column pads rows apart so that column-wise stores (the transposed loads
  // below) fall in different local-memory banks.
  __local Dtype a_tile[TILE][TILE + 1];
  __local Dtype b_tile[TILE][TILE + 1];

  Dtype acc = 0;
  for (int k0 = 0; k0 < K; k0 += TILE) {
    // Neighbouring work-items (consecutive tx) should read neighbouring addresses.
    // For a stored-as-is A that means walking along k; for a transposed A, whose
    // rows run along i, the roles of tx and ty swap. Likewise for B.
    if (!trans_a) {
      const int i = row0 + ty, k = k0 + tx;
      a_tile[ty][tx] = (i < M && k < K) ? OP_A(i, k) : 0;
    } else {
      const int i = row0 + tx, k = k0 + ty;
      a_tile[tx][ty] = (i < M && k < K) ? OP_A(i, k) : 0;
    }
    if (!trans_b) {
      const int k = k0 + ty, j = col0 + tx;
      b_tile[ty][tx] = (k < K && j < N) ? OP_B(k, j) : 0;
    } else {
      const int k = k0 + tx, j = col0 + ty;
      b_tile[tx][ty] = (k < K && j < N) ? OP_B(k, j) : 0;
    }
    barrier(CLK_LOCAL_MEM_FENCE);  // the tiles are complete
    for (int k = 0; k < TILE; ++k) {
      acc += a_tile[ty][k] * b_tile[k][tx];
    }
    barrier(CLK_LOCAL_MEM_FENCE);  // everyone is done before the next load
  }
  if (row < M && col < N) {
    const int c = c_offset + row * N + col;
    C[c] = beta == 0 ? alpha * acc : alpha * acc + beta * C[c];
  }
}

// ---- gemm_blocked: the same product, more work per work-item.
//
// gemm_tiled does one multiply-add per two local-memory reads. Here each work-item
// computes a WPT x WPT block of C, so one value read from a tile feeds WPT
// multiply-adds, kept in private registers (`acc`). A work-group is still
// TILE x TILE work-items but owns a (TILE WPT) x (TILE WPT) block of C: work-item
// (tx, ty) computes the elements (row0 + ty + TILE a, col0 + tx + TILE b) for
// a, b < WPT. Spreading a work-item's elements TILE apart (rather than side by
// side) keeps consecutive work-items on consecutive addresses for every load and
// store. Edges work as in gemm_tiled: zeros loaded outside the matrices, stores
// guarded. The host picks this kernel when M and N fill at least one block
// (WPT = 4 on GPUs, 8 on CPUs, where it is ~4x faster than gemm_tiled under PoCL).
#ifndef WPT
#define WPT 4
#endif
#define BLOCK (TILE * WPT)

__kernel __attribute__((reqd_work_group_size(TILE, TILE, 1)))
void gemm_blocked(const int M, const int N, const int K, const Dtype alpha,
                  __global const Dtype* A, const int a_offset, const int trans_a,
                  __global const Dtype* B, const int b_offset, const int trans_b,
                  const Dtype beta, __global Dtype* C, const int c_offset) {
  const int tx = get_local_id(0), ty = get_local_id(1);
  const int row0 = get_group_id(1) * BLOCK, col0 = get_group_id(0) * BLOCK;

  // a_tile[r][k] = op(A)[row0 + r][k0 + k]  (BLOCK x TILE)
  // b_tile[k][c] = op(B)[k0 + k][col0 + c]  (TILE x BLOCK)
  __local Dtype a_tile[BLOCK][TILE + 1];
  __local Dtype b_tile[TILE][BLOCK + 1];

  Dtype acc[WPT][WPT];
  for (int a = 0; a < WPT; ++a)
    for (int b = 0; b < WPT; ++b) acc[a][b] = 0;

  for (int k0 = 0; k0 < K; k0 += TILE) {
    // Each work-item loads WPT values of each tile, one per TILE-row band.
    for (int w = 0; w < WPT; ++w) {
      if (!trans_a) {
        const int r = ty + TILE * w, i = row0 + r, k = k0 + tx;
        a_tile[r][tx] = (i < M && k < K) ? OP_A(i, k) : 0;
      } else {
        const int r = tx + TILE * w, i = row0 + r, k = k0 + ty;
        a_tile[r][ty] = (i < M && k < K) ? OP_A(i, k) : 0;
      }
      if (!trans_b) {
        const int c = tx + TILE * w, k = k0 + ty, j = col0 + c;
        b_tile[ty][c] = (k < K && j < N) ? OP_B(k, j) : 0;
      } else {
        const int c = ty + TILE * w, k = k0 + tx, j = col0 + c;
        b_tile[tx][c] = (k < K && j < N) ? OP_B(k, j) : 0;
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int k = 0; k < TILE; ++k) {
      Dtype b_reg[WPT];
      for (int b = 0; b < WPT; ++b) b_reg[b] = b_tile[k][tx + TILE * b];
      for (int a = 0; a < WPT; ++a) {
        const Dtype a_reg = a_tile[ty + TILE * a][k];
        for (int b = 0; b < WPT; ++b) acc[a][b] += a_reg * b_reg[b];
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  for (int a = 0; a < WPT; ++a) {
    const int row = row0 + ty + TILE * a;
    for (int b = 0; b < WPT; ++b) {
      const int col = col0 + tx + TILE * b;
      if (row < M && col < N) {
        const int c = c_offset + row * N + col;
        C[c] = beta == 0 ? alpha * acc[a][b] : alpha * acc[a][b] + beta * C[c];
      }
    }
  }
}

// ---- Kernels for CPU devices (PoCL): vectors instead of local-memory tiles.
//
// On a CPU an OpenCL work-group runs as a loop over its work-items, local memory is
// ordinary cache and a barrier ends one loop and starts the next, so the tiled
// kernels above mostly pay for their barriers. What a CPU needs is SIMD: explicit
// vector types (floatVW), which PoCL maps onto AVX registers, and enough work per
// work-item to hide the loop. Two kernels cover the products the layers use; the
// host (opencl.gemm) picks them on CPU devices and falls back to gemm_tiled or
// gemm_blocked for the shapes they do not fit (a transposed B with a transposed A).

// VW: vector width (values per vector load); RM: rows of C per work-item (gemm_strips);
// RD: rows and columns of C per work-item (gemm_dots).
#ifndef VW
#define VW 16
#endif
#ifndef RM
#define RM 8
#endif
#ifndef RD
#define RD 4
#endif
#define CONCAT_(a, b) a##b
#define CONCAT(a, b) CONCAT_(a, b)
#define DtypeV CONCAT(DTYPE, VW)  // floatVW: the vector type
#define VLOAD CONCAT(vload, VW)
#define VSTORE CONCAT(vstore, VW)

// gemm_strips: op(B) is B as stored (K x N, rows along j). A work-item owns a strip of
// C: RM rows by VW consecutive columns. For each k it loads VW values of row k of B as
// one vector and adds op(A)(i, k) times that vector into each row's accumulator: an
// outer product, RM vector multiply-adds per vector load, with no reduction at the end.
// op(A) may be transposed: its element (i, k) is A[i si + k sk] with strides set once.
// Ragged edges: rows past M read row M - 1 (harmless) and are not stored; a strip
// that would run past column N is done one column at a time.
__kernel void gemm_strips(const int M, const int N, const int K, const Dtype alpha,
                          __global const Dtype* A, const int a_offset, const int trans_a,
                          __global const Dtype* B, const int b_offset,
                          const Dtype beta, __global Dtype* C, const int c_offset) {
  const int j = get_global_id(0) * VW, i0 = get_global_id(1) * RM;
  if (j >= N || i0 >= M) return;
  const int si = trans_a ? 1 : K, sk = trans_a ? M : 1;
  __global const Dtype* a[RM];
  for (int r = 0; r < RM; ++r) a[r] = A + a_offset + min(i0 + r, M - 1) * si;
  __global const Dtype* b = B + b_offset + j;
  __global Dtype* c = C + c_offset + i0 * N + j;
  const int rows = min(RM, M - i0);
  if (j + VW <= N) {
    DtypeV acc[RM];
    for (int r = 0; r < RM; ++r) acc[r] = 0;
    for (int k = 0; k < K; ++k) {
      const DtypeV b_k = VLOAD(0, b + k * N);
      for (int r = 0; r < RM; ++r) acc[r] += a[r][k * sk] * b_k;
    }
    for (int r = 0; r < rows; ++r) {
      const DtypeV out = beta == 0 ? alpha * acc[r] : alpha * acc[r] + beta * VLOAD(0, c + r * N);
      VSTORE(out, 0, c + r * N);
    }
  } else {
    for (int jj = 0; jj < N - j; ++jj) {
      for (int r = 0; r < rows; ++r) {
        Dtype acc = 0;
        for (int k = 0; k < K; ++k) acc += a[r][k * sk] * b[k * N + jj];
        __global Dtype* out = c + r * N + jj;
        *out = beta == 0 ? alpha * acc : alpha * acc + beta * *out;
      }
    }
  }
}

// gemm_dots: op(B) is the transpose of B as stored (N x K), A as stored (M x K), so
// both run along k: every element of C is a dot product of two contiguous rows. A
// work-item owns an RD x RD block of C; it loads VW values of each of its RD rows of
// A and RD rows of B and multiplies every pair lane by lane (RD^2 vector
// multiply-adds per 2 RD loads), then adds up each accumulator's lanes at the end.
// The K % VW values left over are added one by one. Edges as in gemm_strips.
__kernel void gemm_dots(const int M, const int N, const int K, const Dtype alpha,
                        __global const Dtype* A, const int a_offset,
                        __global const Dtype* B, const int b_offset,
                        const Dtype beta, __global Dtype* C, const int c_offset) {
  const int j0 = get_global_id(0) * RD, i0 = get_global_id(1) * RD;
  if (j0 >= N || i0 >= M) return;
  __global const Dtype* a[RD];
  __global const Dtype* b[RD];
  for (int r = 0; r < RD; ++r) {
    a[r] = A + a_offset + min(i0 + r, M - 1) * K;
    b[r] = B + b_offset + min(j0 + r, N - 1) * K;
  }
  DtypeV acc[RD][RD];
  for (int r = 0; r < RD; ++r)
    for (int s = 0; s < RD; ++s) acc[r][s] = 0;
  int k = 0;
  for (; k + VW <= K; k += VW) {
    DtypeV b_k[RD];
    for (int s = 0; s < RD; ++s) b_k[s] = VLOAD(0, b[s] + k);
    for (int r = 0; r < RD; ++r) {
      const DtypeV a_k = VLOAD(0, a[r] + k);
      for (int s = 0; s < RD; ++s) acc[r][s] += a_k * b_k[s];
    }
  }
  for (int r = 0; r < min(RD, M - i0); ++r) {
    for (int s = 0; s < min(RD, N - j0); ++s) {
      Dtype lanes[VW];
      VSTORE(acc[r][s], 0, (Dtype*)lanes);
      Dtype sum = 0;
      for (int v = 0; v < VW; ++v) sum += lanes[v];
      for (int kk = k; kk < K; ++kk) sum += a[r][kk] * b[s][kk];
      __global Dtype* out = C + c_offset + (i0 + r) * N + j0 + s;
      *out = beta == 0 ? alpha * sum : alpha * sum + beta * *out;
    }
  }
}
