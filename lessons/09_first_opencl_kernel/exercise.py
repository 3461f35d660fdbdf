"""Lesson 09: your first OpenCL kernel. Complete the three functions marked TODO.

Needs an OpenCL device (PoCL on a CPU is fine): `minicaffe device_query` lists them.

Check your work:   python -m pytest lessons/09_first_opencl_kernel
Try it:            python lessons/09_first_opencl_kernel/exercise.py
"""
import numpy as np

from minicaffe import opencl


def build(source: str):
    """Compile OpenCL C source for minicaffe's device, as minicaffe compiles opencl/*.cl:
    with Dtype = float and `#include "common.cl"` available (for KERNEL_LOOP)."""
    import pyopencl as cl
    options = list(opencl.BUILD_OPTIONS) + ["-I", str(opencl.kernel_dir())]
    return cl.Program(opencl.device().context, source).build(options=options)


def relu_kernel_source() -> str:
    """OpenCL C source defining

        __kernel void relu_forward(const int n, __global const Dtype* in,
                                   __global Dtype* out, const Dtype negative_slope)

    out[i] = in[i] > 0 ? in[i] : in[i] * negative_slope for every i < n, whatever the
    number of work-items: loop with KERNEL_LOOP(i, n) from common.cl.
    """
    raise NotImplementedError("TODO: lesson 09, relu_kernel_source")


def saxpy_kernel_source() -> str:
    """OpenCL C source of a kernel `saxpy(const int n, const Dtype alpha,
    __global const Dtype* x, __global Dtype* y)` doing y[i] = alpha * x[i] + y[i]."""
    raise NotImplementedError("TODO: lesson 09, saxpy_kernel_source")


def saxpy(alpha: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """alpha * x + y computed on the device; x and y are left unchanged.

    Steps: build(saxpy_kernel_source()); two buffers (opencl.allocate(n)) filled with
    opencl.copy_to_device (float32, contiguous); launch with
    `program.saxpy(opencl.queue(), (global_size,), None, np.int32(n), np.float32(alpha), xb, yb)`;
    read the result back with opencl.copy_to_host.
    """
    raise NotImplementedError("TODO: lesson 09, saxpy")


if __name__ == "__main__":
    import pyopencl as cl

    print("device:", opencl.device().device.name)
    x = np.linspace(-2, 2, 9).astype(np.float32)
    program = build(relu_kernel_source())
    src, dst = opencl.allocate(x.size), opencl.allocate(x.size)
    opencl.copy_to_device(src, x)
    program.relu_forward(opencl.queue(), (4,), None, np.int32(x.size), src, dst, np.float32(0.1))
    out = np.empty_like(x)
    opencl.copy_to_host(out, dst)
    print("x        =", x)
    print("relu(x)  =", out, "(4 work-items for 9 values)")
    print("2x + 1   =", saxpy(2.0, x, np.ones_like(x)))
