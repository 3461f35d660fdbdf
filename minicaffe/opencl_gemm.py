"""GEMM and GEMV on the OpenCL engine: Caffe's caffe_gpu_gemm / caffe_gpu_gemv.

`gemm` computes C = alpha op(A) op(B) + beta C with the kernels of `opencl/gemm.cl`,
launched through the engine of `opencl.py`. Caffe hands this to cuBLAS; here it is
four hand-written kernels, and choosing among them is the only tuning in minicaffe:

* `tiled`: work-groups of TILE x TILE work-items copy blocks of A and B into local
  memory and share them (the textbook GPU kernel); any shape, any transposition.
* `blocked`: the same, each work-item computing WPT x WPT values of C; for large C.
* `strips`: for CPUs. A work-item owns RM rows x VW columns of C and adds outer
  products of vectors (B not transposed).
* `dots`: for CPUs. Every value of C is a dot product of two contiguous rows, done VW
  lanes at a time (only B transposed).

`_variant` picks the kernel for a device and a shape, `_sizes` the kernel sizes
(passed to gemm.cl as -D options). The numbers behind both are in their docstrings.
"""
from __future__ import annotations

from math import ceil

import numpy as np

from minicaffe import opencl
from minicaffe.opencl import DTYPE


def gemm(trans_a: bool, trans_b: bool, M: int, N: int, K: int, alpha: float, A, B,
         beta: float, C, a_offset: int = 0, b_offset: int = 0, c_offset: int = 0,
         variant: str | None = None) -> None:
    """C = alpha op(A) op(B) + beta C, row-major, as caffe_gpu_gemm (see opencl/gemm.cl).

    op(A) is M x K (A stored K x M when `trans_a`), op(B) is K x N (B stored N x K when
    `trans_b`), C is M x N; each starts `*_offset` values into its buffer. K = 0 is
    allowed (an empty sum: C = beta C). `variant` forces one kernel (tests use it); by
    default `_variant` picks the fastest that fits the device and the shape.
    """
    if M <= 0 or N <= 0:
        return
    dev = opencl.device()
    variant = variant or _variant(dev, trans_a, trans_b, M, N, K)
    sizes = _sizes(dev)
    options = tuple(f"-D{name}={value}" for name, value in sizes.items())
    i32 = np.int32
    if variant in ("tiled", "blocked"):
        tile = sizes["TILE"]
        # Each work-group covers a tile x tile block of C (tiled) or a block x block one.
        covers = tile if variant == "tiled" else tile * sizes["WPT"]
        opencl.kernel("gemm.cl", f"gemm_{variant}", options).launch(
            (ceil(N / covers) * tile, ceil(M / covers) * tile), (tile, tile),
            i32(M), i32(N), i32(K), DTYPE(alpha), A, i32(a_offset), i32(bool(trans_a)),
            B, i32(b_offset), i32(bool(trans_b)), DTYPE(beta), C, i32(c_offset))
    elif variant == "strips" and not trans_b:
        # Work-groups of strips side by side along N: they share rows of A in cache.
        strips, group = ceil(N / sizes["VW"]), 8
        opencl.kernel("gemm.cl", "gemm_strips", options).launch(
            (ceil(strips / group) * group, ceil(M / sizes["RM"])), (group, 1),
            i32(M), i32(N), i32(K), DTYPE(alpha), A, i32(a_offset), i32(bool(trans_a)),
            B, i32(b_offset), DTYPE(beta), C, i32(c_offset))
    elif variant == "dots" and trans_b and not trans_a:
        opencl.kernel("gemm.cl", "gemm_dots", options).launch(
            (ceil(N / sizes["RD"]), ceil(M / sizes["RD"])), None,
            i32(M), i32(N), i32(K), DTYPE(alpha), A, i32(a_offset),
            B, i32(b_offset), DTYPE(beta), C, i32(c_offset))
    else:
        raise ValueError(f"gemm variant must be 'tiled', 'blocked', 'strips' (B not "
                         f"transposed) or 'dots' (only B transposed), got {variant!r} "
                         f"with trans_a={bool(trans_a)}, trans_b={bool(trans_b)}")


def gemv(trans_a: bool, M: int, N: int, alpha: float, A, x, beta: float, y,
         a_offset: int = 0, x_offset: int = 0, y_offset: int = 0) -> None:
    """y = alpha op(A) x + beta y with A stored M x N (caffe_gpu_gemv), via gemm."""
    if trans_a:  # y (N) = A^T (N x M) x (M)
        gemm(True, False, N, 1, M, alpha, A, x, beta, y, a_offset, x_offset, y_offset)
    else:  # y (M) = A (M x N) x (N)
        gemm(False, False, M, 1, N, alpha, A, x, beta, y, a_offset, x_offset, y_offset)


# ---------------------------------------------------------------------- tuning
def _variant(dev: opencl.Device, trans_a: bool, trans_b: bool, M: int, N: int, K: int) -> str:
    """The kernel for this product: SIMD strips or dots on CPUs, local-memory tiles on GPUs.

    Under PoCL the vector kernels run 5-20x faster than the tiled ones (measured on
    LeNet's products: 15-35 GFLOP/s against 1-5 on two cores). They need a full vector
    of columns (strips) or of k (dots); smaller products go to the tiled kernels.
    """
    sizes = _sizes(dev)
    if dev.is_cpu:
        if not trans_b and N >= sizes["VW"]:
            return "strips"
        if trans_b and not trans_a and K >= sizes["VW"]:
            return "dots"
    whole_blocks = M >= sizes["TILE"] * sizes["WPT"] and N >= sizes["TILE"] * sizes["WPT"]
    return "blocked" if whole_blocks else "tiled"


def _sizes(dev: opencl.Device) -> dict[str, int]:
    """gemm.cl's sizes for this device, passed to it as -D options.

    Tiled kernels (TILE, WPT): GPUs get 16 x 16 work-groups, 4 x 4 values per work-item
    (the usual choice); devices with small work-groups 8 x 8 groups. CPUs (PoCL runs a
    work-group as a loop) 8 x 8 groups of 8 x 8 values, about 1.5x faster there.
    CPU kernels (VW, RM, RD): vectors as wide as the device prefers (16 floats with
    AVX-512, 8 with AVX), strips of 16 rows (12 with narrower vectors, so that the
    accumulators stay in registers), 4 x 4 dot products per work-item.
    """
    if dev.is_cpu:
        vw = 16 if dev.device.preferred_vector_width_float >= 16 else 8
        return {"TILE": 8, "WPT": 8, "VW": vw, "RM": 16 if vw == 16 else 12, "RD": 4}
    tile = 16 if dev.device.max_work_group_size >= 256 else 8
    return {"TILE": tile, "WPT": 4, "VW": 4, "RM": 8, "RD": 4}
