"""The OpenCL engine's foundation: device, program cache, memory, maths, GEMM, im2col.

These tests need an OpenCL device (the PoCL CPU driver, `apt-get install
pocl-opencl-icd`, is enough). Without one they skip, except under
MINICAFFE_REQUIRE_DEVICE=1, which CI sets so that a broken driver fails the run (see
tests/conftest.py; tests/test_no_device.py covers what works without a device). Every program is compiled once per session (the cache is tested too),
so only the first test to use a .cl file pays PoCL's compile time.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicaffe import common, opencl, opencl_gemm
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.syncedmem import HEAD_AT_CPU, HEAD_AT_GPU, SYNCED, UNINITIALIZED, SyncedMemory

pytestmark = pytest.mark.opencl

EPS = np.finfo(np.float32).eps


def to_device(array) -> object:
    array = np.ascontiguousarray(array, dtype=np.float32).ravel()
    buffer = opencl.allocate(array.size)
    opencl.copy_to_device(buffer, array)
    return buffer


def to_host(buffer, n: int) -> np.ndarray:
    out = np.empty(n, dtype=np.float32)
    opencl.copy_to_host(out, buffer)
    return out


# ---------------------------------------------------------------------- device
def test_available_on_this_machine():
    assert opencl.available(), f"no working OpenCL device: {opencl.why_unavailable()}"
    assert opencl.why_unavailable() == ""


def test_device_query_describes_the_device():
    text = opencl.device_query()
    platform, device = opencl.devices()[opencl.device().index]
    assert device.name in text and platform.name in text
    for field in ("Type:", "Compute units:", "Global memory:", "Local memory:",
                  "Max work-group size:", "OpenCL version:"):
        assert field in text
    assert str(device.max_compute_units) in text


@pytest.mark.parametrize("selection", ["99", "-1", "7:0", "0:99", "gpu"])
def test_nonexistent_device_is_a_clear_error(monkeypatch, selection):
    monkeypatch.setenv("MINICAFFE_DEVICE", selection)
    with pytest.raises(MinicaffeError, match="does not exist") as error:
        opencl.device()
    # The message lists what does exist.
    assert opencl.devices()[0][1].name in str(error.value)
    assert not opencl.available() and "does not exist" in opencl.why_unavailable()


def test_set_device_selects_by_index(monkeypatch):
    monkeypatch.delenv("MINICAFFE_DEVICE", raising=False)
    old = common.device_id()
    try:
        common.set_device(len(opencl.devices()))
        with pytest.raises(MinicaffeError, match="does not exist"):
            opencl.device()
    finally:
        common.set_device(old)
    monkeypatch.setenv("MINICAFFE_DEVICE", "0:0")
    assert opencl.device().index == 0


def test_one_context_and_queue_per_device():
    assert opencl.device() is opencl.device()
    assert opencl.queue() is opencl.device().queue


# ---------------------------------------------------------------------- programs
def test_build_failure_shows_file_and_log(tmp_path):
    (tmp_path / "broken.cl").write_text(
        "__kernel void broken(const int n, __global float* y) {\n"
        "  y[0] = undeclared_name;\n"
        "}\n")
    with pytest.raises(MinicaffeError) as error:
        opencl.kernel("broken.cl", "broken", directory=tmp_path)
    message = str(error.value)
    assert str(tmp_path / "broken.cl") in message
    assert "undeclared_name" in message  # the compiler's own words, from the build log


def test_include_path_is_the_kernel_folder(tmp_path):
    (tmp_path / "helper.h").write_text("#define TWICE(x) (2 * (x))\n")
    (tmp_path / "uses_helper.cl").write_text(
        '#include "helper.h"\n'
        "__kernel void twice(const int n, __global float* y) {\n"
        "  for (int i = get_global_id(0); i < n; i += get_global_size(0)) y[i] = TWICE(i);\n"
        "}\n")
    y = opencl.allocate(5)
    opencl.kernel("uses_helper.cl", "twice", directory=tmp_path)(5, y)
    np.testing.assert_array_equal(to_host(y, 5), [0, 2, 4, 6, 8])


def test_unknown_kernel_name_lists_the_file_kernels():
    with pytest.raises(MinicaffeError, match="axpy_kernel"):
        opencl.kernel("math.cl", "no_such_kernel")


def test_programs_compile_once(monkeypatch):
    first = opencl.kernel("math.cl", "axpy_kernel")
    assert opencl.kernel("math.cl", "axpy_kernel") is first
    import pyopencl

    def no_compiling(*args, **kwargs):
        raise AssertionError("a cached program was compiled again")
    monkeypatch.setattr(pyopencl, "Program", no_compiling)
    # Another kernel of the same file comes from the cached program.
    x = to_device(np.ones(3))
    opencl.kernel("math.cl", "scal_kernel")(3, np.float32(2.0), x)
    np.testing.assert_array_equal(to_host(x, 3), [2, 2, 2])


def test_python_scalars_are_refused():
    x = opencl.allocate(4)
    with pytest.raises(TypeError, match="np.float32"):
        opencl.kernel("math.cl", "scal_kernel")(4, 2.0, x)


def test_empty_launch_does_nothing():
    x = to_device([5.0])
    opencl.kernel("math.cl", "scal_kernel")(0, np.float32(0.0), x)
    assert to_host(x, 1)[0] == 5.0


def test_out_of_memory_says_how_much():
    device = opencl.device().device
    n = device.max_mem_alloc_size // 4 + 1
    with pytest.raises(MinicaffeError, match="out of device memory") as error:
        opencl.allocate(n)
    assert str(n) in str(error.value) and "MiB" in str(error.value)


# ---------------------------------------------------------------------- SyncedMemory
def counts():
    return dict(SyncedMemory.transfers)


def delta(before):
    return {k: SyncedMemory.transfers[k] - before[k] for k in before}


def test_syncedmem_copies_only_when_stale():
    before = counts()
    mem = SyncedMemory(10)
    assert mem.head == UNINITIALIZED
    mem.gpu_data()  # zero-filled on the device, nothing copied
    assert mem.head == HEAD_AT_GPU and delta(before) == {"to_cpu": 0, "to_gpu": 0}
    np.testing.assert_array_equal(mem.cpu_data(), 0)
    assert mem.head == SYNCED and delta(before) == {"to_cpu": 1, "to_gpu": 0}

    mem.mutable_cpu_data()[...] = np.arange(10)
    assert mem.head == HEAD_AT_CPU
    mem.gpu_data()
    mem.gpu_data()  # second read: already synced
    assert mem.head == SYNCED and delta(before) == {"to_cpu": 1, "to_gpu": 1}
    mem.cpu_data()
    assert delta(before) == {"to_cpu": 1, "to_gpu": 1}

    opencl.scal(10, 3.0, mem.mutable_gpu_data())
    assert mem.head == HEAD_AT_GPU
    np.testing.assert_array_equal(mem.cpu_data(), 3 * np.arange(10))
    mem.cpu_data()
    assert mem.head == SYNCED and delta(before) == {"to_cpu": 2, "to_gpu": 1}


def test_syncedmem_stays_on_device_between_kernels():
    mem = SyncedMemory(1000)
    mem.mutable_cpu_data()[...] = 1.0
    before = counts()
    for _ in range(5):  # five "layers" in a row touch only the device copy
        opencl.scal(1000, 2.0, mem.mutable_gpu_data())
    assert delta(before) == {"to_cpu": 0, "to_gpu": 1}
    np.testing.assert_array_equal(mem.cpu_data(), 32.0)
    assert delta(before) == {"to_cpu": 1, "to_gpu": 1}


def test_blob_update_on_device():
    blob = Blob(2, 3)
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    diff = np.full((2, 3), 0.5, dtype=np.float32)
    blob.data, blob.diff = data, diff
    before = counts()
    with common.using_mode(common.GPU):
        blob.update()
        blob.update()
    assert delta(before) == {"to_cpu": 0, "to_gpu": 2}  # data and diff went up once
    np.testing.assert_array_equal(blob.cpu_data(), data - 2 * diff)
    np.testing.assert_array_equal(blob.cpu_diff(), diff)
    assert delta(before) == {"to_cpu": 1, "to_gpu": 2}  # diff was never changed: no copy


# ---------------------------------------------------------------------- vector maths
N_SIZES = [1, 7, 1000, 70001]  # 70001 > the launch cap on small devices: exercises the stride


def vectors(n, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.uniform(-2, 2, n).astype(np.float32)
    b = rng.uniform(0.5, 2, n).astype(np.float32) * rng.choice([-1, 1], n).astype(np.float32)
    return a, b


@pytest.mark.parametrize("n", N_SIZES)
@pytest.mark.parametrize("name, reference", [
    ("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("div", np.divide)])
def test_binary_ops(n, name, reference):
    a, b = vectors(n)
    y = opencl.allocate(n)
    getattr(opencl, name)(n, to_device(a), to_device(b), y)
    np.testing.assert_allclose(to_host(y, n), reference(a, b), rtol=EPS)


@pytest.mark.parametrize("n", N_SIZES)
@pytest.mark.parametrize("name, reference", [
    ("exp", np.exp), ("abs", np.abs), ("sign", np.sign), ("sqr", np.square)])
def test_unary_ops(n, name, reference):
    a, _ = vectors(n)
    a[::3] = 0.0  # sign(0) = 0
    y = opencl.allocate(n)
    getattr(opencl, name)(n, to_device(a), y)
    # exp is accurate to a few ulp in OpenCL C (the spec allows 3 ulp).
    np.testing.assert_allclose(to_host(y, n), reference(a), rtol=4 * EPS)


@pytest.mark.parametrize("alpha", [2.0, 0.5, -1.5])
def test_powx(alpha):
    a = np.random.default_rng(1).uniform(0.1, 3, 500).astype(np.float32)
    y = opencl.allocate(500)
    opencl.powx(500, to_device(a), alpha, y)
    # OpenCL C allows pow 16 ulp of error.
    np.testing.assert_allclose(to_host(y, 500), a.astype(np.float64) ** alpha, rtol=16 * EPS)


@pytest.mark.parametrize("n", N_SIZES)
def test_blas1(n):
    x, y0 = vectors(n)
    y = to_device(y0)
    opencl.axpy(n, -0.5, to_device(x), y)
    expected = y0 - np.float32(0.5) * x
    np.testing.assert_allclose(to_host(y, n), expected, rtol=EPS, atol=EPS)
    opencl.axpby(n, 2.0, to_device(x), 0.25, y)
    expected = 2 * x + np.float32(0.25) * expected
    np.testing.assert_allclose(to_host(y, n), expected, rtol=2 * EPS, atol=4 * EPS)
    opencl.scal(n, -3.0, y)
    opencl.add_scalar(n, 1.0, y)
    np.testing.assert_allclose(to_host(y, n), -3 * expected + 1, rtol=4 * EPS, atol=8 * EPS)


def test_fill_and_copy_with_offsets():
    buf = to_device(np.arange(10))
    opencl.fill(buf, 4, 7.0, offset=3)
    np.testing.assert_array_equal(to_host(buf, 10), [0, 1, 2, 7, 7, 7, 7, 7, 8, 9])
    dst = to_device(np.zeros(6))
    opencl.copy(3, buf, dst, src_offset=7, dst_offset=2)
    np.testing.assert_array_equal(to_host(dst, 6), [0, 0, 7, 8, 9, 0])


@pytest.mark.parametrize("n", N_SIZES)
def test_reductions(n):
    x, y = vectors(n, seed=n)
    xd, yd = to_device(x), to_device(y)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    # float32 partial sums of n terms, summed in another order than numpy's: the error
    # is bounded by n * eps * sum|term| (the standard bound for any summation order).
    for got, terms in [(opencl.sum(n, xd), x64), (opencl.asum(n, xd), np.abs(x64)),
                       (opencl.sumsq(n, xd), x64**2), (opencl.dot(n, xd, yd), x64 * y64)]:
        assert abs(got - terms.sum()) <= n * EPS * np.abs(terms).sum() + 1e-30


# ---------------------------------------------------------------------- GEMM
def check_gemm(M, N, K, trans_a, trans_b, alpha, beta, offsets, variant, seed):
    rng = np.random.default_rng(seed)
    a_off, b_off, c_off = offsets
    A = rng.uniform(-1, 1, (K, M) if trans_a else (M, K)).astype(np.float32)
    B = rng.uniform(-1, 1, (N, K) if trans_b else (K, N)).astype(np.float32)
    C = rng.uniform(-1, 1, (M, N)).astype(np.float32)
    if beta == 0:
        C[...] = np.nan  # beta = 0 means C is not read, as in BLAS
    pad = 3  # values after each matrix, to catch writes past the end
    buffers = []
    for offset, array in ((a_off, A), (b_off, B), (c_off, C)):
        host = np.full(offset + array.size + pad, -7.0, dtype=np.float32)
        host[offset:offset + array.size] = array.ravel()
        buffers.append(to_device(host))
    opencl_gemm.gemm(trans_a, trans_b, M, N, K, alpha, buffers[0], buffers[1], beta,
                     buffers[2], a_off, b_off, c_off, variant=variant)
    out = to_host(buffers[2], c_off + C.size + pad)

    opA = (A.T if trans_a else A).astype(np.float64)
    opB = (B.T if trans_b else B).astype(np.float64)
    expected = alpha * opA @ opB + (beta * C.astype(np.float64) if beta else 0)
    # Tolerance: float32 sums of K products, in another order than numpy's; the
    # standard bound for any order is (K + 2) eps times the sum of |terms|.
    bound = (K + 2) * EPS * (abs(alpha) * np.abs(opA) @ np.abs(opB)
                             + (abs(beta) * np.abs(C) if beta else 0))
    got = out[c_off:c_off + C.size].reshape(M, N)
    assert np.all(np.abs(got - expected) <= bound + 1e-30), \
        f"max error {np.abs(got - expected).max()} for M={M} N={N} K={K}"
    np.testing.assert_array_equal(out[:c_off], -7.0)
    np.testing.assert_array_equal(out[c_off + C.size:], -7.0)


@given(M=st.integers(1, 70), N=st.integers(1, 70), K=st.integers(1, 70),
       trans_a=st.booleans(), trans_b=st.booleans(),
       alpha=st.sampled_from([1.0, -1.0, 0.5, 2.0]), beta=st.sampled_from([0.0, 1.0, -0.5]),
       offsets=st.tuples(*[st.integers(0, 5)] * 3),
       variant=st.sampled_from([None, "tiled", "blocked"]), seed=st.integers(0, 2**16))
def test_gemm_matches_numpy(M, N, K, trans_a, trans_b, alpha, beta, offsets, variant, seed):
    check_gemm(M, N, K, trans_a, trans_b, alpha, beta, offsets, variant, seed)


@pytest.mark.parametrize("variant", ["tiled", "blocked"])
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True),
                                              (True, True)])
@pytest.mark.parametrize("M, N, K", [(1, 1, 1), (64, 64, 64), (65, 63, 17), (7, 70, 33)])
def test_gemm_edges(variant, trans_a, trans_b, M, N, K):
    """Whole tiles, ragged tiles and single elements, for both kernels."""
    check_gemm(M, N, K, trans_a, trans_b, 1.5, 0.5, (1, 2, 3), variant, seed=M * N * K)


def test_gemm_empty_sum_scales_c():
    c = to_device([1.0, 2.0, 3.0, 4.0])
    a = opencl.allocate(1)
    opencl_gemm.gemm(False, False, 2, 2, 0, 1.0, a, a, 2.0, c)
    np.testing.assert_array_equal(to_host(c, 4), [2, 4, 6, 8])


def test_gemv():
    rng = np.random.default_rng(3)
    A = rng.uniform(-1, 1, (5, 4)).astype(np.float32)
    x5, x4 = rng.uniform(-1, 1, 5).astype(np.float32), rng.uniform(-1, 1, 4).astype(np.float32)
    y = opencl.allocate(5)
    opencl_gemm.gemv(False, 5, 4, 2.0, to_device(A), to_device(x4), 0.0, y)
    np.testing.assert_allclose(to_host(y, 5), 2 * A @ x4, rtol=1e-5, atol=1e-6)
    y = to_device(np.ones(4))
    opencl_gemm.gemv(True, 5, 4, 1.0, to_device(A), to_device(x5), 1.0, y)
    np.testing.assert_allclose(to_host(y, 4), A.T @ x5 + 1, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- im2col
def out_size(size, k, pad, stride, dilation):
    return (size + 2 * pad - (dilation * (k - 1) + 1)) // stride + 1


def im2col_reference(im, kh, kw, pad, stride, dilation):
    """Caffe's im2col written as plainly as possible: one loop per index."""
    C, H, W = im.shape
    (ph, pw), (sh, sw), (dh, dw) = pad, stride, dilation
    OH, OW = out_size(H, kh, ph, sh, dh), out_size(W, kw, pw, sw, dw)
    col = np.zeros((C * kh * kw, OH * OW), dtype=np.float32)
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                for y in range(OH):
                    for x in range(OW):
                        h, w = y * sh - ph + i * dh, x * sw - pw + j * dw
                        if 0 <= h < H and 0 <= w < W:
                            col[(c * kh + i) * kw + j, y * OW + x] = im[c, h, w]
    return col


def col2im_reference(col, shape, kh, kw, pad, stride, dilation):
    """The adjoint: add each col entry back onto the pixel it came from."""
    C, H, W = shape
    (ph, pw), (sh, sw), (dh, dw) = pad, stride, dilation
    OH, OW = out_size(H, kh, ph, sh, dh), out_size(W, kw, pw, sw, dw)
    im = np.zeros(shape, dtype=np.float64)
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                for y in range(OH):
                    for x in range(OW):
                        h, w = y * sh - ph + i * dh, x * sw - pw + j * dw
                        if 0 <= h < H and 0 <= w < W:
                            im[c, h, w] += col[(c * kh + i) * kw + j, y * OW + x]
    return im


@st.composite
def conv_geometries(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    pad = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    # The smallest image for which the (dilated) kernel fits once, up to a few more pixels.
    h0 = max(1, dilation[0] * (kh - 1) + 1 - 2 * pad[0])
    w0 = max(1, dilation[1] * (kw - 1) + 1 - 2 * pad[1])
    shape = (draw(st.integers(1, 3)), h0 + draw(st.integers(0, 6)), w0 + draw(st.integers(0, 6)))
    return shape, kh, kw, pad, stride, dilation


@given(geometry=conv_geometries(), offsets=st.tuples(st.integers(0, 9), st.integers(0, 9)),
       seed=st.integers(0, 2**16))
def test_im2col_and_col2im_match_reference(geometry, offsets, seed):
    shape, kh, kw, pad, stride, dilation = geometry
    C, H, W = shape
    OH, OW = out_size(H, kh, pad[0], stride[0], dilation[0]), out_size(W, kw, pad[1], stride[1], dilation[1])
    assert OH >= 1 and OW >= 1
    im_off, col_off = offsets
    rng = np.random.default_rng(seed)
    im = rng.uniform(-1, 1, shape).astype(np.float32)
    args = (C, H, W, kh, kw, pad[0], pad[1], stride[0], stride[1], dilation[0], dilation[1])

    # im2col, with the image and the columns placed at an offset in larger buffers
    im_buf = to_device(np.concatenate([np.zeros(im_off, np.float32), im.ravel()]))
    n_col = C * kh * kw * OH * OW
    col_buf = to_device(np.full(col_off + n_col, -7.0))
    opencl.im2col(im_buf, *args, col_buf, im_offset=im_off, col_offset=col_off)
    col = to_host(col_buf, col_off + n_col)
    np.testing.assert_array_equal(col[:col_off], -7.0)
    expected_col = im2col_reference(im, kh, kw, pad, stride, dilation)
    np.testing.assert_array_equal(col[col_off:].reshape(expected_col.shape), expected_col)

    # col2im of other values, gathering from an offset into an image at an offset
    y = rng.uniform(-1, 1, expected_col.shape).astype(np.float32)
    y_buf = to_device(np.concatenate([np.zeros(col_off, np.float32), y.ravel()]))
    back_buf = to_device(np.full(im_off + im.size, -7.0))
    opencl.col2im(y_buf, *args, back_buf, col_offset=col_off, im_offset=im_off)
    back = to_host(back_buf, im_off + im.size)
    np.testing.assert_array_equal(back[:im_off], -7.0)
    back = back[im_off:].reshape(shape)
    expected_back = col2im_reference(y, shape, kh, kw, pad, stride, dilation)
    # Each pixel sums at most kh * kw entries, in another order than the reference.
    np.testing.assert_allclose(back, expected_back, rtol=0, atol=kh * kw * EPS * 2)

    # Adjointness: <im2col(x), y> = <x, col2im(y)>, the identity backward relies on.
    lhs = np.dot(col[col_off:].astype(np.float64), y.ravel().astype(np.float64))
    rhs = np.dot(im.ravel().astype(np.float64), back.ravel().astype(np.float64))
    assert abs(lhs - rhs) <= 1e-5 * max(1.0, np.abs(y).sum())


def test_im2col_known_answer():
    """2x2 kernel, stride 1, no padding, on a 3x3 image 0..8: four 2x2 windows."""
    im = to_device(np.arange(9))
    col = opencl.allocate(16)
    opencl.im2col(im, 1, 3, 3, 2, 2, 0, 0, 1, 1, 1, 1, col)
    np.testing.assert_array_equal(to_host(col, 16).reshape(4, 4),
                                  [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]])
    back = opencl.allocate(9)
    opencl.col2im(to_device(np.ones(16)), 1, 3, 3, 2, 2, 0, 0, 1, 1, 1, 1, back)
    # Each pixel is counted once per window that holds it.
    np.testing.assert_array_equal(to_host(back, 9), [1, 2, 1, 2, 4, 2, 1, 2, 1])
