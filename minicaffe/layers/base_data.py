"""Base of the data layers that read ahead: Caffe's `base_data_layer.cpp`
(BasePrefetchingDataLayer). Registers no type.

A subclass implements `load_batch(batch_index)`, returning a tuple of arrays (one per
top, e.g. (images, labels)), and calls `set_batch_index(0)` at the end of its setup.
A daemon thread then prepares up to `prefetch` batches ahead (0: load in forward); an
error in the thread is raised by the next forward, naming the layer and the batch.
Batches are addressed by index, so a resumed solver asks for batch k directly.
The Data, ImageData and WindowData layers read ahead through it.
"""
from __future__ import annotations

import queue
import threading
import weakref

from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer


class _Failure:
    """What the prefetch thread queues instead of a batch when loading fails."""

    def __init__(self, batch_index: int, error: BaseException):
        self.batch_index, self.error = batch_index, error


class PrefetchingDataLayer(Layer):
    """Bottomless layer whose forward copies the next prefetched batch into its tops."""

    exact_num_bottom_blobs = 0
    prefetch = 4
    owner = "data layer"
    source = ""
    _thread = None
    _failure = None

    def load_batch(self, batch_index: int) -> tuple:
        raise NotImplementedError

    def forward_cpu(self, bottom, top):
        batch = self._next_batch()
        if isinstance(batch, _Failure):
            self._failure = batch  # the thread has stopped; later forwards fail the same way
            raise MinicaffeError(f"{self.owner}: reading batch {batch.batch_index} from "
                                 f"{self.source!r} failed: {batch.error}") from batch.error
        for blob, array in zip(top, batch):
            blob.reshape(array.shape)  # as Caffe's Forward, which reshapes to each batch
            blob.mutable_cpu_data()[...] = array

    def backward_cpu(self, top, propagate_down, bottom):
        """Data layers have no bottoms, so there is nothing to propagate."""

    # Copying the batch to the host blob is all; the tops sync to the device when read.
    forward_gpu, backward_gpu = forward_cpu, backward_cpu

    def allow_force_backward(self, bottom_index):
        return False

    def _load_or_fail(self, batch_index: int):
        try:
            return self.load_batch(batch_index)
        except Exception as err:  # handed to forward, which raises it with context
            return _Failure(batch_index, err)

    def _next_batch(self):
        if self._failure is not None:
            return self._failure
        index = self._next_index
        self._next_index += 1
        if not self.prefetch:
            return self._load_or_fail(index)
        while True:
            try:
                return self._queue.get(timeout=1.0)
            except queue.Empty:
                if not self._thread.is_alive():  # only if the interpreter is shutting down
                    return _Failure(index, RuntimeError("the prefetch thread has stopped"))

    def set_batch_index(self, batch_index: int) -> None:
        """Make the next forward return batch `batch_index`; restarts the prefetcher."""
        self.stop_prefetch()
        self._next_index = int(batch_index)
        self._failure = None
        if not self.prefetch:
            return
        self._queue = queue.Queue(maxsize=self.prefetch)
        self._stop = threading.Event()
        # A weak reference: a dropped layer is collected (its __del__ stops the thread)
        # instead of the thread keeping it alive.
        self._thread = threading.Thread(
            target=_prefetch_loop, name=f"prefetch {self.name}", daemon=True,
            args=(weakref.ref(self), self._next_index, self._queue, self._stop))
        self._thread.start()

    def stop_prefetch(self) -> None:
        """Stop the prefetch thread and drop the batches it read ahead."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def __del__(self):
        if self._thread is not None:
            self._stop.set()


def _prefetch_loop(layer_ref, batch_index: int, out: queue.Queue, stop: threading.Event) -> None:
    """Load batch after batch into `out` until `stop` is set or the layer is gone."""
    while not stop.is_set():
        layer = layer_ref()
        if layer is None:
            return
        batch = layer._load_or_fail(batch_index)
        del layer
        while not stop.is_set():
            try:
                out.put(batch, timeout=0.05)  # wake now and then to notice `stop`
                break
            except queue.Full:
                continue
        if isinstance(batch, _Failure):
            return
        batch_index += 1
