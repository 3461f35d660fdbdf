r"""HDF5Data: rows of named datasets from a list of HDF5 files.

Caffe's `hdf5_data_layer.cpp` (not a prefetching layer: it copies rows in forward).

Device twin: none. The layer only copies rows into its tops on the host (the blobs copy
them to the device when a kernel first reads them), so forward_gpu is forward_cpu.
"""
from __future__ import annotations

import logging

import numpy as np

from minicaffe import common
from minicaffe.common import MinicaffeError
from minicaffe.io import hdf5
from minicaffe.layer import Layer, register_layer

log = logging.getLogger(__name__)


@register_layer
class HDF5DataLayer(Layer):
    r"""Each top is the dataset of the same name, `batch_size` rows at a time.

    `hdf5_data_param.source` is a text file listing `.h5` files (whitespace-separated,
    usually one a line; paths as written, i.e. relative to the working directory). Top
    $t$ named `label` reads dataset `/label` of the current file; its shape is the
    dataset's with the first axis replaced by `batch_size`. Every dataset of a file must
    have the same number of rows, and every file the first file's row shape.

    Rows are read in order, file after file, wrapping to the first file at the end (a
    batch may span two files). With `shuffle: true` the file order is shuffled at setup
    and at each wrap, and the rows of a file are shuffled when it is loaded and whenever
    reading passes its last row, as Caffe does. The order comes from the seed drawn at
    setup from `minicaffe.common.rng()`, so `set_random_seed` makes it repeatable and
    `set_batch_index(k)` (used when a solver resumes) replays it to batch $k$.

    Float and integer datasets are read as float32. No `transform_param`: preprocess
    the data before writing the file. No backward.

        layer {
          name: "data" type: "HDF5Data" top: "data" top: "label"
          hdf5_data_param { source: "train.txt" batch_size: 10 shuffle: true }
        }
    """

    type = "HDF5Data"
    exact_num_bottom_blobs = 0
    min_top_blobs = 1

    def layer_setup(self, bottom, top):
        p = self.layer_param.hdf5_data_param
        self.owner = f"{self.type} layer {self.name!r}"
        if self.layer_param.HasField("transform_param"):
            raise MinicaffeError(f"{self.owner} does not transform data; remove transform_param "
                                 "and preprocess the data before writing the HDF5 file")
        if p.batch_size <= 0:
            raise MinicaffeError(f"{self.owner}: hdf5_data_param.batch_size must be positive, "
                                 f"got {p.batch_size}")
        self.batch_size, self.shuffle = int(p.batch_size), bool(p.shuffle)
        self.dataset_names = list(self.layer_param.top)[:len(top)] or [f"top{i}" for i in range(len(top))]
        self.filenames = self._read_source(p.source)
        log.info("%s: number of HDF5 files: %d", self.owner, len(self.filenames))
        self.seed = int(common.rng().integers(2**63))
        self._rows_of: dict[int, int] = {}  # file index -> rows, learned when first loaded
        self._loaded_file = None
        self.set_batch_index(0)
        self.row_shapes = [d.shape[1:] for d in self.data]
        self.first_file = self.filenames[self.file_permutation[self.current_file]]
        for blob, row_shape in zip(top, self.row_shapes):
            blob.reshape((self.batch_size, *row_shape))

    def _read_source(self, source: str) -> list[str]:
        try:
            with open(source) as f:
                names = f.read().split()
        except OSError as err:
            raise MinicaffeError(f"{self.owner}: failed to open source file {source!r} "
                                 f"({err.strerror or err})") from None
        if not names:
            raise MinicaffeError(f"{self.owner}: source {source!r} lists no HDF5 file; it must "
                                 "list at least one")
        return names

    # ---- the reading position (Caffe's current_file_, current_row_, permutations)
    def set_batch_index(self, batch_index: int) -> None:
        """Make the next forward return batch `batch_index`, replaying the shuffles."""
        self._rng = np.random.default_rng(self.seed)
        self.file_permutation = np.arange(len(self.filenames))
        if self.shuffle:
            self._rng.shuffle(self.file_permutation)
        self.current_file, self.current_row = 0, 0
        self._load(self.file_permutation[0])
        rows = int(batch_index) * self.batch_size
        while rows:
            rows -= self._advance(rows)

    def _load(self, file_index: int) -> None:
        """Read every top's dataset from file `file_index`; reset (and shuffle) the row order."""
        name = self.filenames[file_index]
        if self._loaded_file != file_index:
            log.debug("%s: loading HDF5 file %s", self.owner, name)
            with hdf5.open_for_reading(name, self.owner) as f:
                data = [hdf5.load_dataset(f, d, f"{self.owner}: {name}") for d in self.dataset_names]
            rows = data[0].shape[0]
            for d, values in zip(self.dataset_names, data):
                if values.shape[0] != rows:
                    raise MinicaffeError(f"{self.owner}: {name}: dataset {d!r} has {values.shape[0]} "
                                         f"rows but {self.dataset_names[0]!r} has {rows}; every "
                                         "dataset of a file must have the same number of rows")
            if rows == 0:
                raise MinicaffeError(f"{self.owner}: {name}: the datasets have no rows")
            if hasattr(self, "row_shapes"):
                for d, values, shape in zip(self.dataset_names, data, self.row_shapes):
                    if values.shape[1:] != shape:
                        raise MinicaffeError(
                            f"{self.owner}: {name}: dataset {d!r} has rows of shape {values.shape[1:]}"
                            f" but {self.first_file} has {shape}; every file must have the same "
                            "row shape")
            self.data, self._loaded_file = data, file_index
            self._rows_of[file_index] = rows
        self.data_permutation = np.arange(self._rows_of[file_index])
        if self.shuffle:
            self._rng.shuffle(self.data_permutation)

    def _advance(self, rows: int) -> int:
        """Advance up to `rows` rows without passing the current file's end; return how many.

        The same as calling Caffe's Next that many times: only the last call can reach
        the end of the file, where the shuffles happen.
        """
        step = min(rows, len(self.data_permutation) - self.current_row)
        self.current_row += step - 1
        self._next()
        return step

    def _next(self) -> None:
        """Advance one row; at a file's end move to the next file (Caffe's Next)."""
        self.current_row += 1
        if self.current_row < len(self.data_permutation):
            return
        if len(self.filenames) > 1:
            self.current_file += 1
            if self.current_file == len(self.filenames):
                self.current_file = 0
                if self.shuffle:
                    self._rng.shuffle(self.file_permutation)
                log.debug("%s: looping around to the first file", self.owner)
            self._load(self.file_permutation[self.current_file])
        self.current_row = 0
        if self.shuffle:
            self._rng.shuffle(self.data_permutation)

    # ---- the layer
    def reshape(self, bottom, top):
        pass  # the tops were shaped once in setup, from the first file's datasets

    def forward_cpu(self, bottom, top):
        outputs = [blob.mutable_cpu_data() for blob in top]
        i = 0
        while i < self.batch_size:  # a run of rows from the current file at a time
            rows = self.data_permutation[self.current_row:self.current_row + self.batch_size - i]
            for out, values in zip(outputs, self.data):
                out[i:i + len(rows)] = values[rows]
            i += self._advance(len(rows))

    def backward_cpu(self, top, propagate_down, bottom):
        """No bottoms: nothing to propagate."""

    forward_gpu, backward_gpu = forward_cpu, backward_cpu

    def allow_force_backward(self, bottom_index):
        return False
