"""Blob: Caffe's N-d array of float32 values (`data`) and their gradients (`diff`).

Layers talk to each other only through Blobs: a layer reads its bottom blobs' `data`
and writes its top blobs' `data` on the way forward, and reads the tops' `diff`
(dE/dtop) and writes the bottoms' `diff` (dE/dbottom) on the way back. Learned
parameters are Blobs too, so the solver updates them with `data -= diff`.

Both halves are `SyncedMemory`, so the same Blob serves the numpy engine and the
OpenCL engine and copies between host and device only when needed. As in Caffe,
`reshape` keeps the memory when the new shape fits the old capacity.
"""
from __future__ import annotations

from math import prod

import numpy as np

from minicaffe.common import MinicaffeError
from minicaffe.syncedmem import SyncedMemory

MAX_BLOB_AXES = 32
MAX_BLOB_COUNT = 2**31 - 1  # Caffe counts values in an int


class Blob:
    """float32 `data` and `diff` of one shape.

    pycaffe-style access: `blob.data` and `blob.diff` are writable numpy arrays of the
    blob's shape; layers use the explicit `cpu_data()` (read-only) and
    `mutable_cpu_data()` (writable) so that the device copy is never left stale.
    """

    def __init__(self, *shape, name: str = ""):
        self.name = name
        self.shape: tuple[int, ...] = ()
        self.count = 0
        self.capacity = 0
        self._data_mem: SyncedMemory | None = None
        self._diff_mem: SyncedMemory | None = None
        if shape:  # Blob() is empty until reshaped; Blob(()) is a scalar
            self.reshape(*shape)

    # ---- shape
    def reshape(self, *shape) -> None:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list, np.ndarray)):
            shape = tuple(shape[0])
        shape = tuple(int(d) for d in shape)
        if len(shape) > MAX_BLOB_AXES:
            raise MinicaffeError(f"blob {self.name!r}: {len(shape)} axes, at most {MAX_BLOB_AXES}")
        if any(d < 0 for d in shape):
            raise MinicaffeError(f"blob {self.name!r}: negative dimension in shape {shape}")
        count = prod(shape)
        if count > MAX_BLOB_COUNT:
            # Caffe's limit too (blob.cpp); and it stops a typo like `num_output: 999999999`
            # before anything tries to allocate terabytes.
            raise MinicaffeError(f"blob {self.name!r}: shape {shape} holds {count:,} values, "
                                 f"more than the {MAX_BLOB_COUNT:,} (INT_MAX) a blob may hold")
        self.shape = shape
        self.count = count
        if self.count > self.capacity or self._data_mem is None:
            self.capacity = self.count
            self._data_mem = SyncedMemory(self.capacity)
            self._diff_mem = SyncedMemory(self.capacity)

    def reshape_like(self, other: "Blob") -> None:
        self.reshape(other.shape)

    @property
    def num_axes(self) -> int:
        return len(self.shape)

    def canonical_axis_index(self, axis: int) -> int:
        """Caffe's CanonicalAxisIndex: allow -1 for the last axis, and check range."""
        n = self.num_axes
        if not -n <= axis < max(n, 1):
            raise MinicaffeError(f"axis {axis} out of range for blob {self.name!r} of shape {self.shape}")
        return axis % n if n else 0

    def count_range(self, start: int, end: int | None = None) -> int:
        """Product of the dimensions in [start, end) (Caffe's count(start, end))."""
        return prod(self.shape[start:end])

    def shape_string(self) -> str:
        return " ".join(str(d) for d in self.shape) + f" ({self.count})"

    # Legacy 4-D accessors, as in pycaffe.
    def _legacy(self, i: int) -> int:
        return self.shape[i] if i < self.num_axes else 1

    num = property(lambda self: self._legacy(0))
    channels = property(lambda self: self._legacy(1))
    height = property(lambda self: self._legacy(2))
    width = property(lambda self: self._legacy(3))

    # ---- host access
    def _shaped(self, flat: np.ndarray) -> np.ndarray:
        return flat[: self.count].reshape(self.shape)

    def _memory(self, which: str) -> SyncedMemory:
        """The data or diff memory; a Blob() nothing has reshaped yet has none."""
        memory = self._data_mem if which == "data" else self._diff_mem
        if memory is None:  # e.g. the top of an Input layer given no shape
            raise MinicaffeError(f"blob {self.name!r} has no shape yet, so it holds no values; "
                                 f"reshape it first")
        return memory

    def cpu_data(self) -> np.ndarray:
        return self._shaped(self._memory("data").cpu_data())

    def mutable_cpu_data(self) -> np.ndarray:
        return self._shaped(self._memory("data").mutable_cpu_data())

    def cpu_diff(self) -> np.ndarray:
        return self._shaped(self._memory("diff").cpu_data())

    def mutable_cpu_diff(self) -> np.ndarray:
        return self._shaped(self._memory("diff").mutable_cpu_data())

    @property
    def data(self) -> np.ndarray:
        """Writable view of the values (pycaffe's `blob.data`)."""
        return self.mutable_cpu_data()

    @data.setter
    def data(self, values) -> None:
        self.mutable_cpu_data()[...] = values

    @property
    def diff(self) -> np.ndarray:
        return self.mutable_cpu_diff()

    @diff.setter
    def diff(self, values) -> None:
        self.mutable_cpu_diff()[...] = values

    # ---- device access (buffers hold `capacity` values; kernels use `count`)
    def gpu_data(self):
        return self._memory("data").gpu_data()

    def mutable_gpu_data(self):
        return self._memory("data").mutable_gpu_data()

    def gpu_diff(self):
        return self._memory("diff").gpu_data()

    def mutable_gpu_diff(self):
        return self._memory("diff").mutable_gpu_data()

    @property
    def data_mem(self) -> SyncedMemory:
        return self._data_mem

    @property
    def diff_mem(self) -> SyncedMemory:
        return self._diff_mem

    # ---- sharing (Flatten, Reshape and Split pass data through without copying)
    def share_data(self, other: "Blob") -> None:
        if self.count != other.count:
            raise MinicaffeError(f"cannot share data: blob {self.name!r} has {self.count} values, "
                                 f"{other.name!r} has {other.count}")
        self._data_mem = other._data_mem

    def share_diff(self, other: "Blob") -> None:
        if self.count != other.count:
            raise MinicaffeError(f"cannot share diff: blob {self.name!r} has {self.count} values, "
                                 f"{other.name!r} has {other.count}")
        self._diff_mem = other._diff_mem

    # ---- arithmetic the solver needs
    def zero_diff(self) -> None:
        from minicaffe import common
        if common.mode() == common.GPU:
            from minicaffe import opencl
            opencl.fill(self.mutable_gpu_diff(), self.count, 0.0)
        else:
            self.mutable_cpu_diff()[...] = 0

    def update(self) -> None:
        """data -= diff: the step every parameter takes once the solver has scaled diff."""
        from minicaffe import common
        if common.mode() == common.GPU:
            from minicaffe import opencl
            opencl.axpy(self.count, -1.0, self.gpu_diff(), self.mutable_gpu_data())
        else:
            self.mutable_cpu_data()[...] -= self.cpu_diff()

    # ---- protobuf
    def from_proto(self, proto, reshape: bool = True) -> None:
        """Load a BlobProto, taking its shape (or checking it when `reshape` is False).

        As Caffe's Blob::FromProto: any of the legacy num/channels/height/width fields set
        means a 4-D shape; otherwise the shape is `shape.dim`, and no dims at all (or no
        `shape`, which is how Caffe writes a blob of zero axes) means a scalar, shape ().
        """
        shape = stored_shape(proto) or ()
        if reshape:
            self.reshape(shape)
        elif prod(shape) != self.count or (shape != self.shape and len(shape) == self.num_axes):
            raise MinicaffeError(f"blob {self.name!r}: shape {shape} in file does not match {self.shape}")
        values = proto.double_data if len(proto.double_data) else proto.data
        if len(values) != self.count:
            raise MinicaffeError(f"blob {self.name!r}: {len(values)} values stored for shape "
                                 f"{shape} ({self.count} values): the file is truncated or corrupt")
        self.mutable_cpu_data()[...] = np.asarray(values, dtype=np.float32).reshape(self.shape)
        diffs = proto.double_diff if len(proto.double_diff) else proto.diff
        if len(diffs) == self.count:
            self.mutable_cpu_diff()[...] = np.asarray(diffs, dtype=np.float32).reshape(self.shape)

    def to_proto(self, proto=None, write_diff: bool = False):
        from minicaffe.proto import caffe_pb2
        proto = caffe_pb2.BlobProto() if proto is None else proto
        proto.Clear()
        if self.shape:  # as Caffe's ToProto: a scalar gets no `shape` (from_proto reads that as ())
            proto.shape.dim.extend(self.shape)
        proto.MergeFromString(_packed_floats(5, self.cpu_data()))  # BlobProto.data
        if write_diff:
            proto.MergeFromString(_packed_floats(6, self.cpu_diff()))  # BlobProto.diff
        return proto

    def __repr__(self) -> str:
        return f"Blob({self.name!r}, shape={self.shape})"


# Caffe's first BlobProto shape: four fields, before the `shape` message of any number of axes.
LEGACY_SHAPE_FIELDS = ("num", "channels", "height", "width")


def has_legacy_shape(proto) -> bool:
    """Whether a BlobProto sets any of the legacy num/channels/height/width fields."""
    return any(proto.HasField(f) for f in LEGACY_SHAPE_FIELDS)


def stored_shape(proto) -> tuple[int, ...] | None:
    """The shape a BlobProto declares, read as Caffe's Blob::FromProto reads it: the four
    legacy fields if any is set, else the `shape` message; None when it has neither."""
    if has_legacy_shape(proto):
        return tuple(getattr(proto, f) for f in LEGACY_SHAPE_FIELDS)
    if proto.HasField("shape"):
        return tuple(proto.shape.dim)
    return None


def _packed_floats(field: int, values: np.ndarray) -> bytes:
    """The wire bytes of a packed `repeated float` field holding `values`.

    `proto.data.extend(values.tolist())` makes one Python float per value: 1.6 s for 25 M
    floats (a ResNet-50 snapshot), while merging the field's wire bytes, which are the
    array's own little-endian bytes after a tag and a length, takes 0.26 s.
    """
    raw = np.ascontiguousarray(values, dtype="<f4").tobytes()
    header, n = bytearray([field << 3 | 2]), len(raw)  # wire type 2: length-delimited
    while n >= 0x80:  # the length as a varint, 7 bits a byte, low bits first
        header.append(n & 0x7F | 0x80)
        n >>= 7
    header.append(n)
    return bytes(header) + raw
