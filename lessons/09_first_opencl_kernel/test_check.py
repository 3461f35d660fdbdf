"""Lesson 09 check: the learner's kernels against numpy and minicaffe's opencl/relu.cl."""
import numpy as np
import pytest

from minicaffe import opencl

pytestmark = [pytest.mark.lesson09,
              pytest.mark.skipif(not opencl.available(),
                                 reason=f"no OpenCL device: {opencl.why_unavailable()}")]


def run_relu(program, x, slope, global_size, spare=16):
    """Launch relu_forward over x with `global_size` work-items; return out and what
    lies past its end (must be left alone)."""
    n = x.size
    src, dst = opencl.allocate(n), opencl.allocate(n + spare)
    opencl.copy_to_device(src, x)
    opencl.copy_to_device(dst, np.full(n + spare, 7.0, dtype=np.float32))
    program.relu_forward(opencl.queue(), (global_size,), None, np.int32(n), src, dst,
                         np.float32(slope))
    out = np.empty(n + spare, dtype=np.float32)
    opencl.copy_to_host(out, dst)
    return out[:n], out[n:]


def minicaffe_relu(x, slope):
    src, dst = opencl.allocate(x.size), opencl.allocate(x.size)
    opencl.copy_to_device(src, x)
    opencl.kernel("relu.cl", "relu_forward")(x.size, src, dst, np.float32(slope))
    out = np.empty_like(x)
    opencl.copy_to_host(out, dst)
    return out


@pytest.mark.parametrize("n,global_size", [(1, 1), (1000, 64), (1000, 1024), (4099, 256), (37, 1)])
@pytest.mark.parametrize("slope", [0.0, 0.25])
def test_relu(lesson, n, global_size, slope):
    program = lesson.build(lesson.relu_kernel_source())
    x = np.random.default_rng(n).normal(size=n).astype(np.float32)
    out, past_end = run_relu(program, x, slope, global_size)
    np.testing.assert_array_equal(out, np.where(x > 0, x, x * np.float32(slope)),
                                  err_msg=f"{n} values, {global_size} work-items")
    np.testing.assert_array_equal(past_end, 7.0, err_msg="wrote past the end of the output")
    np.testing.assert_array_equal(out, minicaffe_relu(x, slope))


@pytest.mark.parametrize("n", [1, 5, 1000, 100003])
def test_saxpy(lesson, n):
    rng = np.random.default_rng(n)
    x, y = rng.normal(size=n).astype(np.float32), rng.normal(size=n).astype(np.float32)
    x0, y0 = x.copy(), y.copy()
    out = lesson.saxpy(1.5, x, y)
    np.testing.assert_allclose(out, 1.5 * x0 + y0, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)
