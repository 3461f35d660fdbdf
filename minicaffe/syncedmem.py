"""SyncedMemory: one array that lives on the host, the device, or both.

The idea is Caffe's (`syncedmem.cpp`): a layer asks for the side it computes on,
and memory is copied only when the other side holds the newer values. The `head`
records where the newest values are:

    UNINITIALIZED  nothing allocated yet
    HEAD_AT_CPU    host copy is newest (device copy, if any, is stale)
    HEAD_AT_GPU    device copy is newest
    SYNCED         both copies hold the same values

`cpu_data()` / `gpu_data()` are for reading and leave the head alone (after syncing);
`mutable_cpu_data()` / `mutable_gpu_data()` are for writing and move the head to
that side, so the next read on the other side copies. The device half is provided by
`minicaffe.opencl`; this module never imports it until a device buffer is asked for.
"""
from __future__ import annotations

import contextlib

import numpy as np

UNINITIALIZED, HEAD_AT_CPU, HEAD_AT_GPU, SYNCED = "uninitialized", "cpu", "gpu", "synced"


class SyncedMemory:
    """`size` float32 values, mirrored between a numpy array and a device buffer."""

    # Counts host<->device copies; the OpenCL tests use it to prove data stays put.
    transfers = {"to_cpu": 0, "to_gpu": 0}

    def __init__(self, size: int):
        self.size = int(size)
        self.head = UNINITIALIZED
        self._cpu: np.ndarray | None = None
        self._gpu = None  # a pyopencl Buffer, made on first use

    # ---- host side
    def _to_cpu(self) -> np.ndarray:
        if self.head == UNINITIALIZED:
            self._cpu = np.zeros(self.size, dtype=np.float32)
            self.head = HEAD_AT_CPU
        elif self.head == HEAD_AT_GPU:
            if self._cpu is None:
                self._cpu = np.empty(self.size, dtype=np.float32)
            from minicaffe import opencl
            opencl.copy_to_host(self._cpu, self._gpu)
            _note("to_cpu", self)
            self.head = SYNCED
        return self._cpu

    def cpu_data(self) -> np.ndarray:
        """The host values, read-only: writing needs `mutable_cpu_data()`."""
        view = self._to_cpu().view()
        view.flags.writeable = False
        return view

    def mutable_cpu_data(self) -> np.ndarray:
        data = self._to_cpu()
        self.head = HEAD_AT_CPU
        return data

    def set_cpu_data(self, array: np.ndarray) -> None:
        """Adopt `array` (float32, `size` values) as the host copy."""
        assert array.dtype == np.float32 and array.size == self.size
        self._cpu = array.reshape(-1)
        self.head = HEAD_AT_CPU

    # ---- device side
    def _to_gpu(self):
        from minicaffe import opencl
        if self._gpu is None:
            self._gpu = opencl.allocate(self.size)
        if self.head == UNINITIALIZED:
            opencl.fill(self._gpu, self.size, 0.0)
            self.head = HEAD_AT_GPU
        elif self.head == HEAD_AT_CPU:
            opencl.copy_to_device(self._gpu, self._cpu)
            _note("to_gpu", self)
            self.head = SYNCED
        return self._gpu

    def gpu_data(self):
        return self._to_gpu()

    def mutable_gpu_data(self):
        buf = self._to_gpu()
        self.head = HEAD_AT_GPU
        return buf


# ---- finding stray copies
_recorders: list[list] = []


def _note(direction: str, memory: SyncedMemory) -> None:
    SyncedMemory.transfers[direction] += 1
    for record in _recorders:
        record.append((direction, memory))


@contextlib.contextmanager
def recording_transfers():
    """Record each copy made in the block as (direction, SyncedMemory), in order.

    A debugging aid for "why did this copy?": compare the memories with a net's
    `blob.data_mem` / `blob.diff_mem` to name the blob (tests/test_transfers.py does).
    """
    record: list = []
    _recorders.append(record)
    try:
        yield record
    finally:
        _recorders.remove(record)
