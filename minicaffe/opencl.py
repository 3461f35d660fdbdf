"""The OpenCL engine's foundation: device, memory, program cache, kernel launcher.

Caffe's GPU mode keeps every Blob on the device between layers and launches one
kernel (or a cuBLAS call) per operation. minicaffe does the same with OpenCL:

* **Device.** `devices()` lists every (platform, device) pair the OpenCL loader
  finds. The one used is `MINICAFFE_DEVICE` when set (an index into that list, or
  "platform:device"), otherwise `minicaffe.common.device_id()`. Each device gets one
  context and one in-order queue, made on first use, so kernels run in the order
  they were launched and a blocking read sees all earlier writes.
* **Memory.** `allocate(n)` makes a buffer of n float32 values; SyncedMemory
  (syncedmem.py) calls it and moves values with `copy_to_device` / `copy_to_host`.
* **Kernels.** `kernel("relu.cl", "relu_forward")` compiles `opencl/relu.cl` once
  per context (with `-I` on the kernel folder, so `#include "common.cl"` works) and
  returns a `Launcher`. Calling it, `launcher(n, *args)`, runs the kernel over n
  items: `n` is passed first as an `int`, and the range is n rounded up to whole
  work-groups (capped; kernels loop with `KERNEL_LOOP`).
* **Maths.** `fill`, `axpy`, `scal`, `dot`, `im2col`, ... : Caffe's `caffe_gpu_*`
  functions (math_functions.hpp, im2col.hpp) backed by opencl/math.cl and
  opencl/im2col.cl. GEMM, with its choice of kernels per device, is `opencl_gemm.py`.

Importing this module never touches OpenCL: pyopencl is imported, and a device
opened, on the first call that needs one. `available()` says whether that works.
"""
from __future__ import annotations

import os
from math import ceil
from pathlib import Path

import numpy as np

from minicaffe import common
from minicaffe.common import MinicaffeError
from minicaffe.im2col import conv_out_shape

INSTALL_HINT = ("Install an OpenCL driver: on Debian/Ubuntu the PoCL CPU driver is "
                "`apt-get install pocl-opencl-icd` (check with `clinfo -l`); from PyPI, "
                "`pip install pocl-binary-distribution`.")

# Values are float32 throughout; kernels see them as Dtype (see opencl/common.cl).
DTYPE = np.float32
BUILD_OPTIONS = ("-D", "DTYPE=float")


# ---------------------------------------------------------------------- kernel files
def kernel_dir() -> Path:
    """The folder of .cl files: `<repo>/opencl` in a source tree, else the wheel's copy.

    pyproject.toml packs `opencl/` into the wheel as `minicaffe/kernels/`.
    """
    package = Path(__file__).resolve().parent
    for folder in (package.parent / "opencl", package / "kernels"):
        if (folder / "common.cl").is_file():
            return folder
    raise MinicaffeError(f"OpenCL kernel files not found: neither {package.parent / 'opencl'} "
                         f"nor {package / 'kernels'} holds common.cl; reinstall minicaffe")


# ---------------------------------------------------------------------- devices
def _cl():
    try:
        import pyopencl
    except ImportError as error:
        raise MinicaffeError(f"the OpenCL engine needs pyopencl ({error}); "
                             f"`pip install pyopencl`. {INSTALL_HINT}") from error
    return pyopencl


def devices() -> list:
    """Every (platform, device) pair, in the order that device indices count them."""
    cl = _cl()
    try:
        platforms = cl.get_platforms()
    except cl.Error as error:  # no ICD loader entries: PLATFORM_NOT_FOUND_KHR
        raise MinicaffeError(f"no OpenCL platform found ({error}). {INSTALL_HINT}") from error
    if not platforms:
        raise MinicaffeError(f"no OpenCL platform found. {INSTALL_HINT}")
    pairs = []
    for platform in platforms:
        try:
            pairs.extend((platform, device) for device in platform.get_devices())
        except cl.Error:  # a platform with no devices raises DEVICE_NOT_FOUND
            continue
    if not pairs:
        names = ", ".join(p.name for p in platforms)
        raise MinicaffeError(f"OpenCL platform(s) {names} found, but no device. {INSTALL_HINT}")
    return pairs


def _numbered(pairs) -> list[tuple[int, int]]:
    """(platform number, device number within it) for each entry of devices()."""
    platforms = list(dict.fromkeys(platform.int_ptr for platform, _ in pairs))
    seen: dict[int, int] = {}
    numbers = []
    for platform, _ in pairs:
        p = platforms.index(platform.int_ptr)
        numbers.append((p, seen.get(p, 0)))
        seen[p] = seen.get(p, 0) + 1
    return numbers


def _device_list_text(pairs) -> str:
    return "\n".join(f"  {i} (or \"{p}:{d}\"): {platform.name} / {dev.name}"
                     for i, ((platform, dev), (p, d)) in enumerate(zip(pairs, _numbered(pairs))))


def selected_device() -> str:
    """The device setting in force: MINICAFFE_DEVICE if set, else common.device_id()."""
    return os.environ.get("MINICAFFE_DEVICE", "").strip() or str(common.device_id())


def _resolve(selection: str) -> int:
    """Index into devices() for "3" or "platform:device" (e.g. "0:1")."""
    pairs = devices()
    try:
        if ":" in selection:
            wanted = tuple(int(part) for part in selection.split(":"))
            index = _numbered(pairs).index(wanted)
        else:
            index = int(selection)
            if not 0 <= index < len(pairs):
                raise IndexError
        return index
    except (ValueError, IndexError):
        raise MinicaffeError(
            f"OpenCL device {selection!r} does not exist (chosen by --gpu, a solver's device_id, "
            f"MINICAFFE_DEVICE or minicaffe.set_device; give an index or \"platform:device\"). "
            f"Devices found:\n{_device_list_text(pairs)}") from None


class Device:
    """One device with its context, in-order queue and compiled programs."""

    def __init__(self, index: int, platform, device):
        cl = _cl()
        self.index, self.platform, self.device = index, platform, device
        self.context = cl.Context([device])
        self.queue = cl.CommandQueue(self.context)  # in-order: the default
        self.programs: dict = {}  # (folder, file, options) -> cl.Program
        self.launchers: dict = {}  # (folder, file, name, options) -> Launcher
        # 1-D launches use work-groups of this size (Caffe uses 512 CUDA threads).
        self.work_group = min(256, device.max_work_group_size)
        # Grid-stride launches stop growing at this many work-items; beyond it,
        # each work-item takes several items, which is cheaper than more groups.
        self.max_global = self.work_group * 64 * max(1, device.max_compute_units)
        # CPU devices (PoCL) run work-groups as loops: opencl_gemm picks vector kernels.
        self.is_cpu = bool(device.type & cl.device_type.CPU)


_devices: dict[int, Device] = {}


def device() -> Device:
    """The selected device, opened (context and queue made) on first use."""
    index = _resolve(selected_device())
    if index not in _devices:
        platform, dev = devices()[index]
        _devices[index] = Device(index, platform, dev)
    return _devices[index]


def queue():
    return device().queue


def finish() -> None:
    """Wait for every launched kernel and copy to complete (for timing)."""
    device().queue.finish()


def device_query(index: int | str | None = None) -> str:
    """Text describing a device, like `caffe device_query`; the selected one by default."""
    pairs = devices()
    chosen = _resolve(selected_device() if index is None else str(index))
    platform, dev = pairs[chosen]
    cl = _cl()
    kind = cl.device_type.to_string(dev.type)
    mib = 1024 * 1024
    rows = [
        ("Device id", chosen),
        ("Platform", f"{platform.name} ({platform.version})"),
        ("Name", dev.name),
        ("Vendor", dev.vendor),
        ("Type", kind),
        ("OpenCL version", dev.version),
        ("Driver version", dev.driver_version),
        ("Compute units", dev.max_compute_units),
        ("Max clock (MHz)", dev.max_clock_frequency),
        ("Global memory", f"{dev.global_mem_size // mib} MiB"),
        ("Max buffer size", f"{dev.max_mem_alloc_size // mib} MiB"),
        ("Local memory", f"{dev.local_mem_size // 1024} KiB"),
        ("Max work-group size", dev.max_work_group_size),
        ("Max work-item sizes", tuple(dev.max_work_item_sizes)),
    ]
    width = max(len(name) for name, _ in rows)
    text = "\n".join(f"{name + ':':<{width + 1}} {value}" for name, value in rows)
    return f"{text}\nAll devices:\n{_device_list_text(pairs)}"


# ---------------------------------------------------------------------- availability
PROBE_SOURCE = """
__kernel void probe(const int n, __global float* out) {
  int i = get_global_id(0);
  if (i < n) out[i] = 2.0f * i + 1.0f;
}
"""
_available: dict[str, tuple[bool, str]] = {}


def available() -> bool:
    """True if the selected device builds and runs a probe kernel correctly.

    Listing a device is not proof: a broken driver lists devices and then fails to
    compile. The answer is cached per device setting; `why_unavailable()` says why.
    """
    key = selected_device()
    if key not in _available:
        _available[key] = _probe()
    return _available[key][0]


def why_unavailable() -> str:
    """Why `available()` is False ("" when it is True)."""
    available()
    return _available[selected_device()][1]


def _probe() -> tuple[bool, str]:
    try:
        cl = _cl()
        dev = device()
        program = cl.Program(dev.context, PROBE_SOURCE).build()
        out = np.zeros(37, dtype=np.float32)
        buffer = cl.Buffer(dev.context, cl.mem_flags.WRITE_ONLY, out.nbytes)
        program.probe(dev.queue, (64,), None, np.int32(out.size), buffer)
        cl.enqueue_copy(dev.queue, out, buffer, is_blocking=True)
    except Exception as error:  # any failure means "not usable"; the reason is kept
        return False, f"{type(error).__name__}: {error}"
    expected = 2.0 * np.arange(out.size, dtype=np.float32) + 1.0
    if not np.array_equal(out, expected):
        return False, f"probe kernel ran but computed {out[:4]}..., expected {expected[:4]}..."
    return True, ""


# ---------------------------------------------------------------------- programs
def program(file: str, options: tuple[str, ...] = (), directory: str | Path | None = None):
    """`<kernel dir>/<file>` built for the selected device, once per context.

    pyopencl also keeps built binaries on disk (keyed by source, included files and
    options), so a new process skips most of the compile.
    """
    cl = _cl()
    dev = device()
    folder = Path(directory) if directory is not None else kernel_dir()
    options = BUILD_OPTIONS + ("-I", str(folder)) + tuple(options)
    key = (str(folder), file, options)
    if key not in dev.programs:
        path = folder / file
        try:
            source = path.read_text()
        except OSError as error:
            raise MinicaffeError(f"cannot read OpenCL kernel file {path}: {error}") from error
        try:
            dev.programs[key] = cl.Program(dev.context, source).build(options=list(options))
        except cl.Error as error:
            raise MinicaffeError(f"OpenCL kernel file {path} failed to build for "
                                 f"{dev.device.name} with options {' '.join(options)}. "
                                 f"Build log:\n{error}") from error
    return dev.programs[key]


class Launcher:
    """A kernel ready to run: `launcher(n, *args)` covers n items (see KERNEL_LOOP).

    Arguments are passed as typed: buffers as they are, scalars as numpy scalars
    (`np.float32(slope)`, `np.int32(offset)`) so the call shows the kernel's C types.
    `n` is the exception, converted to `np.int32` here as every kernel's first argument.
    """

    def __init__(self, dev: Device, prog, file: str, name: str):
        cl = _cl()
        try:
            self.kernel = cl.Kernel(prog, name)
        except cl.Error as error:
            names = prog.get_info(cl.program_info.KERNEL_NAMES).replace(";", ", ")
            raise MinicaffeError(f"OpenCL kernel {name!r} not found in {file}; "
                                 f"it defines: {names}") from error
        self.device, self.file, self.name = dev, file, name
        most = self.kernel.get_work_group_info(cl.kernel_work_group_info.WORK_GROUP_SIZE,
                                               dev.device)
        self.work_group = min(dev.work_group, most)

    def __call__(self, n: int, *args):
        n = int(n)
        if n <= 0:  # an empty range is an OpenCL error; nothing to do
            return
        self.check_args(args)
        groups = ceil(n / self.work_group)
        size = min(groups * self.work_group, self.device.max_global)
        size -= size % self.work_group
        self.kernel(self.device.queue, (size,), (self.work_group,), np.int32(n), *args)

    def launch(self, global_size: tuple, local_size: tuple | None, *args):
        """Run with an explicit N-d range, for kernels that are not one loop over n."""
        self.check_args(args)
        self.kernel(self.device.queue, global_size, local_size, *args)

    def check_args(self, args) -> None:
        for position, arg in enumerate(args, start=2):
            if isinstance(arg, (bool, int, float)):
                raise TypeError(f"{self.file}:{self.name} argument {position} is the Python "
                                f"{type(arg).__name__} {arg!r}; pass a numpy scalar of the "
                                f"kernel's C type, e.g. np.float32(x) or np.int32(i)")


def kernel(file: str, name: str, options: tuple[str, ...] = (),
           directory: str | Path | None = None) -> Launcher:
    """The launcher for kernel `name` of `opencl/<file>` on the selected device."""
    dev = device()
    folder = Path(directory) if directory is not None else kernel_dir()
    key = (str(folder), file, name, tuple(options))
    if key not in dev.launchers:
        dev.launchers[key] = Launcher(dev, program(file, options, folder), file, name)
    return dev.launchers[key]


# ---------------------------------------------------------------------- memory
def allocate(n: int):
    """A device buffer of n float32 values (contents undefined)."""
    cl = _cl()
    dev = device()
    nbytes = max(int(n), 1) * np.dtype(DTYPE).itemsize  # OpenCL has no empty buffers
    limit, total = dev.device.max_mem_alloc_size, dev.device.global_mem_size

    def too_big(detail: str) -> MinicaffeError:
        return MinicaffeError(
            f"out of device memory: asked for {int(n)} float32 values ({nbytes / 2**20:.1f} MiB) "
            f"on {dev.device.name}, which has {total / 2**20:.0f} MiB of global memory and "
            f"allows at most {limit / 2**20:.0f} MiB per buffer ({detail}); "
            f"use a smaller batch_size or the CPU engine")

    if nbytes > limit:
        raise too_big("over the per-buffer limit")
    try:
        return cl.Buffer(dev.context, cl.mem_flags.READ_WRITE, nbytes)
    except cl.Error as error:
        raise too_big(str(error)) from error


def _host_array(array: np.ndarray, what: str) -> None:
    if array.dtype != DTYPE or not array.flags.c_contiguous:
        raise TypeError(f"{what} needs a C-contiguous float32 array, got {array.dtype} "
                        f"(contiguous: {array.flags.c_contiguous})")


def copy_to_host(array: np.ndarray, buffer) -> None:
    """Read the first `array.size` values of `buffer` into `array`; waits for them."""
    _host_array(array, "copy_to_host")
    read_bytes(array, buffer)


def copy_to_device(buffer, array: np.ndarray) -> None:
    """Write `array` into the start of `buffer`; returns once `array` may be reused."""
    _host_array(array, "copy_to_device")
    write_bytes(buffer, array)


# The two copies above, without their float32 check: for the few buffers that hold other
# types (int8 weights and int32 sums of minicaffe/quantize.py).
def read_bytes(array: np.ndarray, buffer) -> None:
    """Fill the C-contiguous `array` from the start of `buffer`, whatever its dtype; waits."""
    if array.nbytes:
        _cl().enqueue_copy(queue(), array, buffer, is_blocking=True)


def write_bytes(buffer, array: np.ndarray) -> None:
    """Write the C-contiguous `array`'s bytes into the start of `buffer`; waits."""
    if array.nbytes:
        _cl().enqueue_copy(queue(), buffer, array, is_blocking=True)


def copy(n: int, src, dst, src_offset: int = 0, dst_offset: int = 0) -> None:
    """dst[dst_offset:+n] = src[src_offset:+n] on the device (caffe_copy)."""
    if n > 0:
        size = np.dtype(DTYPE).itemsize
        _cl().enqueue_copy(queue(), dst, src, byte_count=n * size,
                           src_offset=src_offset * size, dst_offset=dst_offset * size)


# ---------------------------------------------------------------------- vector maths
def _math(name: str) -> Launcher:
    return kernel("math.cl", f"{name}_kernel")


def fill(buffer, n: int, value: float, offset: int = 0) -> None:
    """buffer[offset:offset+n] = value (caffe_gpu_set)."""
    _math("set")(n, DTYPE(value), buffer, np.int32(offset))


def add_scalar(n: int, alpha: float, y) -> None:
    """y += alpha (caffe_gpu_add_scalar)."""
    _math("add_scalar")(n, DTYPE(alpha), y)


def axpy(n: int, alpha: float, x, y) -> None:
    """y = alpha x + y (caffe_gpu_axpy)."""
    _math("axpy")(n, DTYPE(alpha), x, y)


def axpby(n: int, alpha: float, x, beta: float, y) -> None:
    """y = alpha x + beta y (caffe_gpu_axpby)."""
    _math("axpby")(n, DTYPE(alpha), x, DTYPE(beta), y)


def scal(n: int, alpha: float, x) -> None:
    """x = alpha x (caffe_gpu_scal)."""
    _math("scal")(n, DTYPE(alpha), x)


def add(n, a, b, y):
    """y = a + b, element-wise; likewise sub, mul, div (caffe_gpu_add, ...)."""
    _math("add")(n, a, b, y)


def sub(n, a, b, y):
    _math("sub")(n, a, b, y)


def mul(n, a, b, y):
    _math("mul")(n, a, b, y)


def div(n, a, b, y):
    _math("div")(n, a, b, y)


def powx(n, a, alpha: float, y):
    """y = a ** alpha (caffe_gpu_powx)."""
    _math("powx")(n, a, DTYPE(alpha), y)


def exp(n, a, y):
    _math("exp")(n, a, y)


def abs(n, a, y):  # noqa: A001  (Caffe's name, module-qualified: opencl.abs)
    _math("abs")(n, a, y)


def sign(n, a, y):
    _math("sign")(n, a, y)


def sqr(n, a, y):
    _math("sqr")(n, a, y)


# Reduction operation codes, as in math.cl.
REDUCE_SUM, REDUCE_ASUM, REDUCE_SUMSQ, REDUCE_DOT = 0, 1, 2, 3
_REDUCE_GROUP = 128  # a power of two: the tree in reduce_kernel halves it
_REDUCE_MAX_GROUPS = 64  # few enough partial sums to finish on the host


def _reduce(n: int, op: int, x, y=None) -> float:
    """Sum of a term over n values: one kernel pass, then the group totals on the host."""
    if n <= 0:
        return 0.0
    cl = _cl()
    launcher = _math("reduce")
    group = min(_REDUCE_GROUP, 1 << (launcher.work_group.bit_length() - 1))
    groups = min(ceil(n / group), _REDUCE_MAX_GROUPS)
    partial = allocate(groups)
    launcher.launch((groups * group,), (group,), np.int32(n), np.int32(op), x,
                    x if y is None else y, partial, cl.LocalMemory(group * 4))
    totals = np.empty(groups, dtype=DTYPE)
    copy_to_host(totals, partial)
    return float(totals.sum(dtype=np.float64))


def asum(n: int, x) -> float:
    """sum |x_i| (caffe_gpu_asum)."""
    return _reduce(n, REDUCE_ASUM, x)


def sumsq(n: int, x) -> float:
    """sum x_i^2 (Blob::sumsq_data)."""
    return _reduce(n, REDUCE_SUMSQ, x)


def sum(n: int, x) -> float:  # noqa: A001
    """sum x_i."""
    return _reduce(n, REDUCE_SUM, x)


def dot(n: int, x, y) -> float:
    """sum x_i y_i (caffe_gpu_dot)."""
    return _reduce(n, REDUCE_DOT, x, y)


# ---------------------------------------------------------------------- im2col
# The output geometry is im2col.py's conv_out_shape: one formula for both engines.
def im2col(im, channels: int, height: int, width: int, kernel_h: int, kernel_w: int,
           pad_h: int, pad_w: int, stride_h: int, stride_w: int,
           dilation_h: int, dilation_w: int, col, im_offset: int = 0, col_offset: int = 0,
           num: int = 1) -> None:
    """col ((C kh kw) x (num OH OW)) from `num` images (num x C x H x W), side by side.

    With num = 1 this is Caffe's im2col_gpu; see opencl/im2col.cl for the layout.
    """
    oh, ow = conv_out_shape((height, width), (kernel_h, kernel_w), (pad_h, pad_w),
                            (stride_h, stride_w), (dilation_h, dilation_w))
    i32 = np.int32
    kernel("im2col.cl", "im2col")(  # one work-item per output row of each col row
        channels * kernel_h * kernel_w * num * oh, im, i32(im_offset), i32(height), i32(width),
        i32(kernel_h), i32(kernel_w), i32(pad_h), i32(pad_w), i32(stride_h), i32(stride_w),
        i32(dilation_h), i32(dilation_w), i32(oh), i32(ow), col, i32(col_offset), i32(num))


def col2im(col, channels: int, height: int, width: int, kernel_h: int, kernel_w: int,
           pad_h: int, pad_w: int, stride_h: int, stride_w: int,
           dilation_h: int, dilation_w: int, im, col_offset: int = 0, im_offset: int = 0,
           num: int = 1) -> None:
    """The adjoint of im2col: im (overwritten) = sum of the col entries from each pixel."""
    oh, ow = conv_out_shape((height, width), (kernel_h, kernel_w), (pad_h, pad_w),
                            (stride_h, stride_w), (dilation_h, dilation_w))
    i32 = np.int32
    kernel("im2col.cl", "col2im")(  # one work-item per image row
        num * channels * height, col, i32(col_offset), i32(height), i32(width),
        i32(kernel_h), i32(kernel_w), i32(pad_h), i32(pad_w), i32(stride_h), i32(stride_w),
        i32(dilation_h), i32(dilation_w), i32(oh), i32(ow), im, i32(im_offset), i32(num))


class ConvGeometry:
    """The spatial geometry of an n-d convolution, kept on the device for im2col_nd.

    `size`, `kernel`, `pad`, `stride`, `dilation`: one value per spatial axis. The
    device copy is the int array im2col.cl's *_nd kernels read: size, out, kernel, pad,
    stride, dilation, each num_axes long. Made once per reshape, not per launch.
    """

    def __init__(self, size, kernel, pad, stride, dilation):
        self.size, self.kernel = tuple(size), tuple(kernel)
        self.pad, self.stride, self.dilation = tuple(pad), tuple(stride), tuple(dilation)
        self.out = conv_out_shape(self.size, self.kernel, self.pad, self.stride, self.dilation)
        self.num_axes = len(self.size)
        if not 1 <= self.num_axes <= 8:  # MAX_AXES in im2col.cl
            raise MinicaffeError(f"im2col_nd handles 1 to 8 spatial axes, got {self.num_axes}")
        values = np.array(self.size + self.out + self.kernel + self.pad + self.stride
                          + self.dilation, dtype=np.int32)
        cl = _cl()
        self.buffer = cl.Buffer(device().context,
                                cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR, hostbuf=values)


def im2col_nd(im, num: int, channels: int, geometry: ConvGeometry, col,
              im_offset: int = 0, col_offset: int = 0) -> None:
    """im2col for any number of spatial axes (Caffe's im2col_nd_gpu), `num` images."""
    kernel("im2col.cl", "im2col_nd")(
        channels * num * int(np.prod(geometry.out)), im, np.int32(im_offset), np.int32(num),
        np.int32(geometry.num_axes), geometry.buffer, col, np.int32(col_offset))


def col2im_nd(col, num: int, channels: int, geometry: ConvGeometry, im,
              col_offset: int = 0, im_offset: int = 0) -> None:
    """The adjoint of im2col_nd (Caffe's col2im_nd_gpu): im is overwritten."""
    kernel("im2col.cl", "col2im_nd")(
        num * channels * int(np.prod(geometry.size)), col, np.int32(col_offset), np.int32(num),
        np.int32(geometry.num_axes), geometry.buffer, im, np.int32(im_offset))
