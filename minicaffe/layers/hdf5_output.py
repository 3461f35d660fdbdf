r"""HDF5Output: write a batch of data and labels to an HDF5 file.

Caffe's `hdf5_output_layer.cpp`.

Device twin: none. The layer computes nothing: it reads its bottoms on the host (they
sync from the device) and hands them to h5py, so forward_gpu is forward_cpu.
"""
from __future__ import annotations

import logging

import h5py
import numpy as np

from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer, register_layer

log = logging.getLogger(__name__)


@register_layer
class HDF5OutputLayer(Layer):
    r"""Saves bottom 0 as dataset `data` and bottom 1 as dataset `label` of `file_name`.

    Setup creates (truncates) the file, so a missing folder or an unwritable path fails
    before anything runs. Forward checks that both bottoms have the same number $N$ of
    rows and writes them in Caffe's legacy 4-axis layout: a bottom of shape $(N, C, H, W)$
    is written as is, one of fewer axes is padded with 1s ($(N,) \to (N, 1, 1, 1)$); one
    of more than 4 axes is an error, as in Caffe. The file holds one batch: as in Caffe,
    where the datasets cannot be made twice, a second forward is an error (write one
    file per batch, or give the layer the whole set as one batch). The file is closed
    when the layer is dropped (or by `close()`). No tops, no backward.

        layer { name: "save" type: "HDF5Output" bottom: "fc8" bottom: "label"
                hdf5_output_param { file_name: "features.h5" } }
    """

    type = "HDF5Output"
    exact_num_bottom_blobs = 2
    exact_num_top_blobs = 0
    _file = None

    def layer_setup(self, bottom, top):
        self.file_name = self.layer_param.hdf5_output_param.file_name
        self.owner = f"{self.type} layer {self.name!r}"
        if not self.file_name:
            raise MinicaffeError(f"{self.owner}: hdf5_output_param.file_name is not set")
        try:
            self._file = h5py.File(self.file_name, "w")
        except (OSError, ValueError) as err:
            raise MinicaffeError(f"{self.owner}: failed to create HDF5 file {self.file_name!r} "
                                 f"({err})") from None
        self.rows_written = None

    def reshape(self, bottom, top):
        pass  # no tops

    def _legacy_4d(self, blob, which: str) -> tuple[int, ...]:
        if blob.num_axes > 4:
            raise MinicaffeError(f"{self.owner}: bottom {which!r} has {blob.num_axes} axes "
                                 f"{blob.shape}; HDF5Output writes at most 4 (N, C, H, W)")
        return tuple(blob.shape) + (1,) * (4 - blob.num_axes)

    def forward_cpu(self, bottom, top):
        data, label = bottom
        if data.num_axes == 0 or label.num_axes == 0 or data.shape[0] != label.shape[0]:
            raise MinicaffeError(f"{self.owner}: data has shape {data.shape} and label {label.shape}; "
                                 "data and label must have the same batch size (first axis)")
        if self.rows_written is not None:
            raise MinicaffeError(f"{self.owner}: {self.file_name!r} already holds a batch of "
                                 f"{self.rows_written} rows; HDF5Output writes one batch per file "
                                 "(as in Caffe)")
        log.info("%s: saving HDF5 file %s", self.owner, self.file_name)
        for name, blob in (("data", data), ("label", label)):
            shape = self._legacy_4d(blob, name)
            self._file.create_dataset(name, data=np.asarray(blob.cpu_data(), np.float32).reshape(shape))
        self._file.flush()
        self.rows_written = data.shape[0]
        log.info("%s: successfully saved %d rows", self.owner, self.rows_written)

    def backward_cpu(self, top, propagate_down, bottom):
        """Writing a file has no gradient: the bottoms' diffs are left alone, as in Caffe."""

    forward_gpu, backward_gpu = forward_cpu, backward_cpu

    def close(self) -> None:
        """Close the file (the layer writes nothing afterwards)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __del__(self):
        self.close()
