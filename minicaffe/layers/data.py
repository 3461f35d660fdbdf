r"""Data: batches of Datums from an LMDB or a LevelDB, read ahead by a background thread.

Caffe's `data_layer.cpp` with `base_data_layer.cpp` (BasePrefetchingDataLayer).

Device twin: none. A data layer only copies a prepared batch into its tops (the blobs
copy it to the device when a kernel first reads it), so forward_gpu is forward_cpu.
"""
from __future__ import annotations

import logging

import numpy as np

from minicaffe import common
from minicaffe.common import MinicaffeError
from minicaffe.data_transformer import DataTransformer
from minicaffe.io.db import open_db
from minicaffe.layer import register_layer
from minicaffe.layers.base_data import PrefetchingDataLayer
from minicaffe.proto import caffe_pb2

log = logging.getLogger(__name__)

# data_param fields that Caffe moved to transform_param; old prototxts still set them.
DEPRECATED_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")


@register_layer
class DataLayer(PrefetchingDataLayer):
    r"""Reads `batch_size` records per forward from `data_param.source`, in key order.

    Batch $k$ holds records $(r + kB + i) \bmod n$, $i = 0 \dots B-1$, for $B$ =
    `batch_size`, $n$ records in the database and $r$ the `rand_skip` offset (uniform in
    $[0, \text{rand\_skip})$, drawn once at setup; 0 by default). Reading wraps to the
    first record at the end, as Caffe does ("Restarting data prefetching from start.").

    In data-parallel training (`minicaffe.parallel`: $N$ = `solver_count()` solvers, this
    one of rank $q$) a TRAIN-phase layer takes every $N$-th record from its own:
    batch $k$ holds records $(r + q + N(kB + i)) \bmod n$, so the $N$ solvers' batches $k$
    together are the records one solver would read as batches $kN \dots kN + N - 1$
    (Caffe's DataLayer::Skip: record $o$ goes to rank $o \bmod N$). A TEST-phase layer
    reads every record, since only rank 0 tests.
    The source is an LMDB or, with `backend: LEVELDB` (Caffe's default), a LevelDB;
    both are read in key order (`minicaffe.io.db`).
    Each record is a serialized `Datum`, transformed by `transform_param` (crop,
    mirror, mean, scale; see `minicaffe.data_transformer`).

    A daemon thread prepares up to `data_param.prefetch` batches ahead while the net
    computes (`prefetch: 0` reads synchronously in forward). An error in the thread is
    raised by the next forward, naming the layer and the batch. `set_batch_index(k)`
    makes the next forward return batch k; a resumed solver calls it so that training
    100 + 100 iterations equals training 200.

    Tops: data (B, C, h, w) float32, shaped from the first record; optional label (B,).
    Every record must have the first record's C x H x W (checked, naming the key).
    No backward: data has no gradient.

        layer {
          name: "mnist" type: "Data" top: "data" top: "label"
          include { phase: TRAIN }
          transform_param { scale: 0.00390625 }
          data_param { source: "examples/mnist/mnist_train_lmdb" batch_size: 64 backend: LMDB }
        }
    """

    type = "Data"
    min_top_blobs = 1
    max_top_blobs = 2

    def layer_setup(self, bottom, top):
        p = self.layer_param.data_param
        self.owner = f"{self.type} layer {self.name!r}"
        self.source = p.source
        if p.batch_size <= 0:
            raise MinicaffeError(f"{self.owner}: data_param.batch_size must be positive, "
                                 f"got {p.batch_size}")
        self.batch_size = int(p.batch_size)
        self.output_labels = len(top) > 1
        transform_param = caffe_pb2.TransformationParameter()
        transform_param.CopyFrom(self.layer_param.transform_param)
        for field in DEPRECATED_TRANSFORM_FIELDS:
            if p.HasField(field):  # Caffe's upgrade moves these into transform_param
                setattr(transform_param, field, getattr(p, field))
        self.transformer = DataTransformer(transform_param, self.phase, owner=self.owner)
        self.db = open_db(p.source, p.backend, owner=self.owner)
        self.datum_shape = self.read_datum(*self.db.read(0))[0].shape
        self.top_shape = (self.batch_size, *self.transformer.output_shape(self.datum_shape))
        self.skip = int(common.rng().integers(p.rand_skip)) if p.rand_skip else 0
        # This solver's share of the records; read once here, so set the count and rank
        # (minicaffe.parallel.init) before building the net.
        if self.phase == caffe_pb2.TRAIN:
            self.solver_count, self.solver_rank = common.solver_count(), common.solver_rank()
        else:
            self.solver_count, self.solver_rank = 1, 0
        if self.skip:
            log.info("%s: skipping first %d data points", self.owner, self.skip)
        log.info("%s: output data size: %s", self.owner, ",".join(map(str, self.top_shape)))
        self.prefetch = int(p.prefetch)
        self.set_batch_index(0)

    def reshape(self, bottom, top):
        top[0].reshape(self.top_shape)
        if self.output_labels:
            top[1].reshape(self.batch_size)

    # ---- reading
    def offsets(self, batch_index: int) -> np.ndarray:
        """How far into the endless, wrapping stream of records batch `batch_index`'s
        records are (this solver's share of it)."""
        items = batch_index * self.batch_size + np.arange(self.batch_size)
        return self.skip + self.solver_rank + self.solver_count * items

    def positions(self, batch_index: int) -> np.ndarray:
        """Record positions of batch `batch_index`."""
        return self.offsets(batch_index) % len(self.db)

    def load_batch(self, batch_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Read and transform batch `batch_index`: (data, labels) as float32 arrays."""
        offsets = self.offsets(batch_index)
        positions = offsets % len(self.db)
        if np.any((positions < self.solver_count) & (offsets >= self.solver_count)):
            log.debug("%s: Restarting data prefetching from start.", self.owner)
        images = np.empty((self.batch_size, *self.datum_shape), dtype=np.float32)
        labels = np.empty(self.batch_size, dtype=np.float32)
        for i, (key, value) in enumerate(self.db.read_many(positions.tolist())):
            images[i], labels[i] = self.read_datum(key, value, self.datum_shape)
        return self.transformer.transform(images, self.transformer.rng_for(batch_index)), labels

    def read_datum(self, key: bytes, value: bytes, expected=None) -> tuple[np.ndarray, int]:
        """(pixels (C, H, W), label) of one record; its shape must be `expected` if given."""
        name = (f"{self.owner}: record {key.decode(errors='replace')!r} of "
                f"{self.layer_param.data_param.source!r}")
        try:
            datum = caffe_pb2.Datum.FromString(value)
        except Exception as err:  # protobuf's DecodeError
            raise MinicaffeError(f"{name} is not a serialized Datum ({err})") from None
        array = self.transformer.datum_to_array(datum, name=name)
        if expected is not None and array.shape != expected:
            raise MinicaffeError(f"{name} is {'x'.join(map(str, array.shape))} (C x H x W) but "
                                 f"the first record is {'x'.join(map(str, expected))}; every "
                                 f"record of a Data layer source must have the same shape")
        return array, datum.label
