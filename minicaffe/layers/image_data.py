r"""ImageData: batches of image files named in a list file, read ahead by a thread.

Caffe's `image_data_layer.cpp` (built only with OpenCV there; Pillow here, through
`minicaffe.io.image`), on the prefetching base `base_data.py`.

Device twin: none. A data layer only copies a prepared batch into its tops, so
forward_gpu is forward_cpu.
"""
from __future__ import annotations

import logging

import numpy as np

from minicaffe import common
from minicaffe.common import MinicaffeError
from minicaffe.data_transformer import DataTransformer
from minicaffe.io.image import read_image, read_list_file
from minicaffe.layer import register_layer
from minicaffe.layers.base_data import PrefetchingDataLayer
from minicaffe.proto import caffe_pb2

log = logging.getLogger(__name__)

# image_data_param fields that Caffe's net upgrade moves into transform_param.
DEPRECATED_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")


@register_layer
class ImageDataLayer(PrefetchingDataLayer):
    r"""Reads `batch_size` images per forward from the files listed in `source`.

    Each line of the list file is `path label`, the integer label after the last space;
    the image is `root_folder + path` (plain concatenation, as in Caffe, so a folder
    needs its trailing `/`). It is decoded in colour (3 channels, BGR order, as OpenCV
    gives Caffe) or, with `is_color: false`, grey (1 channel); resized to `new_height`
    x `new_width` by bilinear interpolation when both are set (both or neither); then
    transformed by `transform_param` (crop, mirror, mean, scale).

    Order: the list's order, or with `shuffle: true` a random permutation drawn at setup
    and a new one each time the reader passes the end of the list (Caffe reshuffles
    then). `rand_skip: r` starts at a position uniform in $[0, r)$ of the first pass.
    Batch $k$ holds list positions $(s + kB + i) \bmod n$ of their pass, for $s$ the
    skip, $B$ = `batch_size`, $n$ lines.

    Tops: data (B, C, h, w) float32 and label (B,). The tops are shaped by the first
    image at setup and reshaped to each batch in forward (as Caffe does), so with
    `batch_size: 1` images may differ in size; within a batch they must not.
    No backward.

        layer {
          name: "data" type: "ImageData" top: "data" top: "label"
          transform_param { scale: 0.00390625 }
          image_data_param { source: "train.txt" root_folder: "digits/" batch_size: 64
                             shuffle: true }
        }
    """

    type = "ImageData"
    exact_num_top_blobs = 2

    def layer_setup(self, bottom, top):
        p = self.layer_param.image_data_param
        self.owner = f"{self.type} layer {self.name!r}"
        self.source = p.source
        if not ((p.new_height == 0 and p.new_width == 0) or (p.new_height > 0 and p.new_width > 0)):
            raise MinicaffeError(f"{self.owner}: new_height ({p.new_height}) and new_width "
                                 f"({p.new_width}) must be set together (or both left at 0)")
        if p.batch_size <= 0:
            raise MinicaffeError(f"{self.owner}: image_data_param.batch_size must be positive, "
                                 f"got {p.batch_size}")
        self.batch_size = int(p.batch_size)
        transform_param = caffe_pb2.TransformationParameter()
        transform_param.CopyFrom(self.layer_param.transform_param)
        for field in DEPRECATED_TRANSFORM_FIELDS:
            if p.HasField(field):
                setattr(transform_param, field, getattr(p, field))
        self.transformer = DataTransformer(transform_param, self.phase, owner=self.owner)

        log.info("%s: opening file %s", self.owner, p.source)
        self.lines = read_list_file(p.source, self.owner)
        self.shuffle = bool(p.shuffle)
        if self.shuffle:
            log.info("%s: shuffling data", self.owner)
            self.shuffle_seed = int(common.rng().integers(2**63))
        log.info("%s: a total of %d images", self.owner, len(self.lines))
        self.skip = 0
        if p.rand_skip:
            self.skip = int(common.rng().integers(p.rand_skip))
            log.info("%s: skipping first %d data points", self.owner, self.skip)
            if self.skip >= len(self.lines):
                raise MinicaffeError(f"{self.owner}: not enough points to skip: rand_skip drew "
                                     f"{self.skip} but the list has {len(self.lines)} lines")
        first = self.read(self.order(0)[self.skip])
        shape = (self.batch_size, *self.transformer.output_shape(first[0].shape))
        self.top_shapes = [shape, (self.batch_size,)]
        log.info("%s: output data size: %s", self.owner, ",".join(map(str, shape)))
        self.prefetch = int(self.layer_param.data_param.prefetch)
        self.set_batch_index(0)

    def reshape(self, bottom, top):
        for blob, shape in zip(top, self.top_shapes):
            blob.reshape(shape)

    # ---- reading
    def order(self, epoch: int) -> np.ndarray:
        """The list positions of pass `epoch` through the list: shuffled per pass if asked."""
        n = len(self.lines)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.shuffle_seed, int(epoch)]).permutation(n)

    def line_indices(self, batch_index: int) -> list[int]:
        """The list lines of batch `batch_index`."""
        n = len(self.lines)
        flat = self.skip + batch_index * self.batch_size + np.arange(self.batch_size)
        orders = {}
        out = []
        for g in flat.tolist():
            epoch = g // n
            if epoch not in orders:
                orders[epoch] = self.order(epoch)
                if epoch and g % n == 0:
                    log.debug("%s: Restarting data prefetching from start.", self.owner)
            out.append(int(orders[epoch][g % n]))
        return out

    def read(self, line_index: int) -> tuple[np.ndarray, int]:
        p = self.layer_param.image_data_param
        path, label = self.lines[line_index]
        return read_image(p.root_folder + path, p.new_height, p.new_width, p.is_color), label

    def load_batch(self, batch_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Read and transform batch `batch_index`: (data, labels) as float32 arrays."""
        images, labels = [], np.empty(self.batch_size, dtype=np.float32)
        for i, line in enumerate(self.line_indices(batch_index)):
            pixels, labels[i] = self.read(line)
            if images and pixels.shape != images[0].shape:
                raise MinicaffeError(
                    f"{self.lines[line][0]!r} is {'x'.join(map(str, pixels.shape))} (C x H x W) "
                    f"but the batch's first image is {'x'.join(map(str, images[0].shape))}; "
                    f"set new_height/new_width, or batch_size: 1 for images of mixed sizes")
            images.append(pixels)
        data = self.transformer.transform(np.stack(images), self.transformer.rng_for(batch_index))
        return data, labels
