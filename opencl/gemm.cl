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
