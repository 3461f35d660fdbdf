"""Lesson 09, WRONG on purpose: relu_forward handles only get_global_id(0), no grid-stride loop."""
import numpy as np

from minicaffe import opencl


def build(source: str):
    import pyopencl as cl
    options = list(opencl.BUILD_OPTIONS) + ["-I", str(opencl.kernel_dir())]
    return cl.Program(opencl.device().context, source).build(options=options)


def relu_kernel_source() -> str:
    return """
#include "common.cl"

__kernel void relu_forward(const int n, __global const Dtype* in, __global Dtype* out,
                           const Dtype negative_slope) {
  const int i = get_global_id(0);  // BUG: KERNEL_LOOP(i, n); fewer work-items than n skip the tail
  if (i < n) out[i] = in[i] > 0 ? in[i] : in[i] * negative_slope;
}
"""


def saxpy_kernel_source() -> str:
    return """
#include "common.cl"

__kernel void saxpy(const int n, const Dtype alpha, __global const Dtype* x,
                    __global Dtype* y) {
  KERNEL_LOOP(i, n) { y[i] = alpha * x[i] + y[i]; }
}
"""


def saxpy(alpha: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    program = build(saxpy_kernel_source())
    n = x.size
    xb, yb = opencl.allocate(n), opencl.allocate(n)
    opencl.copy_to_device(xb, np.ascontiguousarray(x, dtype=np.float32))
    opencl.copy_to_device(yb, np.ascontiguousarray(y, dtype=np.float32))
    # Any global size works with KERNEL_LOOP; round up to whole groups of 64.
    program.saxpy(opencl.queue(), (min(-(-n // 64) * 64, 64 * 256),), None,
                  np.int32(n), np.float32(alpha), xb, yb)
    out = np.empty(n, dtype=np.float32)
    opencl.copy_to_host(out, yb)
    return out
