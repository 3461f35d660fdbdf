r"""MemoryData: batches from arrays that the program hands over (pycaffe's set_input_arrays).

Caffe: `memory_data_layer.cpp` (a BaseDataLayer) and pycaffe's `Net_SetInputArrays` in
`_caffe.cpp`. No device twin: forward copies a slice of host memory into the tops, which
the next layer's kernel copies in, so forward_gpu is forward_cpu.
"""
from __future__ import annotations

import logging

import numpy as np

from minicaffe.common import MinicaffeError
from minicaffe.data_transformer import DataTransformer
from minicaffe.layer import Layer, register_layer

log = logging.getLogger(__name__)


@register_layer
class MemoryDataLayer(Layer):
    r"""Serve `batch_size` items per forward from arrays given by the program.

    `memory_data_param` fixes one item's shape (`channels` x `height` x `width`) and the
    batch size; all four must be positive. The program supplies N items, N a multiple of
    `batch_size`, in one of two ways:

    * `net.set_input_arrays(data, labels)` (or `layer.reset(data, labels)`): a float32,
      C-contiguous (N, C, H, W) array and N labels. They are used as they are, with no
      transform (Caffe warns when `transform_param` is set) and without a copy: the
      layer keeps the arrays, so keep them alive and unchanged while it reads them.
    * `layer.add_datum_vector(datums)`: Datums, transformed by `transform_param` (crop,
      mirror, mean, scale) into the layer's own memory. It refuses new Datums until
      every batch of the previous ones has been served once.

    Forward $k$ serves items $[p, p + B)$ with $p = kB \bmod N$: the arrays repeat
    after $N / B$ forwards. Tops: data (B, C, H, W) and label (B, 1, 1, 1) (shaped (B,)
    at setup, as in Caffe). No backward. `set_batch_size(B)` changes B (for the next
    arrays), refused while Datums from add_datum_vector are still being served.

        layer { name: "data" type: "MemoryData" top: "data" top: "label"
                memory_data_param { batch_size: 64 channels: 1 height: 28 width: 28 } }
    """

    type = "MemoryData"
    exact_num_bottom_blobs = 0
    exact_num_top_blobs = 2

    def layer_setup(self, bottom, top):
        p = self.layer_param.memory_data_param
        self.owner = f"{self.type} layer {self.name!r}"
        self.batch_size, self.channels = int(p.batch_size), int(p.channels)
        self.height, self.width = int(p.height), int(p.width)
        if self.batch_size * self.channels * self.height * self.width <= 0:
            raise MinicaffeError(
                f"{self.owner}: batch_size, channels, height and width must all be given and "
                f"positive in memory_data_param; got batch_size {self.batch_size}, channels "
                f"{self.channels}, height {self.height}, width {self.width}")
        self.transformer = DataTransformer(self.layer_param.transform_param, self.phase,
                                           owner=self.owner)
        top[0].reshape(self.batch_size, self.channels, self.height, self.width)
        top[1].reshape(self.batch_size)
        self.data = self.labels = None  # nothing to serve until reset / add_datum_vector
        self.n = self.pos = 0
        self.has_new_data = False  # Datums added and not yet all served

    @property
    def item_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def reset(self, data, labels) -> None:
        """Serve `data` (N, C, H, W) float32 and `labels` (N,) from the first item on.

        Caffe's Reset: the arrays are used untransformed and uncopied."""
        data = self._checked(data, "data array", self.item_shape)
        labels = np.asarray(labels)
        if labels.ndim == 1:  # pycaffe's set_input_arrays accepts (N,) labels
            labels = labels.reshape(-1, 1, 1, 1)
        labels = self._checked(labels, "labels array", (1, 1, 1))
        if data.shape[0] != labels.shape[0]:
            raise MinicaffeError(f"{self.owner}: data and labels must have the same first "
                                 f"dimension; got {data.shape[0]} and {labels.shape[0]}")
        n = data.shape[0]
        if n == 0 or n % self.batch_size:
            raise MinicaffeError(f"{self.owner}: the arrays hold {n} items; that must be a "
                                 f"positive multiple of batch_size {self.batch_size}")
        if self.layer_param.HasField("transform_param"):
            log.warning("%s does not transform array data on Reset()", self.owner)
        self.data, self.labels = data, labels.reshape(n)
        self.n, self.pos = n, 0

    def _checked(self, array, what: str, item_shape) -> np.ndarray:
        # pycaffe's CheckContiguousArray: the layer reads the caller's memory as it is.
        if not isinstance(array, np.ndarray):
            raise MinicaffeError(f"{self.owner}: the {what} must be a numpy array, got "
                                 f"{type(array).__name__}")
        if array.dtype != np.float32:
            raise MinicaffeError(f"{self.owner}: the {what} must be float32, got {array.dtype} "
                                 f"(convert it with .astype(np.float32))")
        if not array.flags.c_contiguous:
            raise MinicaffeError(f"{self.owner}: the {what} must be C-contiguous "
                                 f"(use np.ascontiguousarray)")
        if array.ndim != 4 or array.shape[1:] != tuple(item_shape):
            raise MinicaffeError(f"{self.owner}: the {what} has shape {array.shape}; expected "
                                 f"(N, {', '.join(map(str, item_shape))})")
        return array

    def add_datum_vector(self, datums) -> None:
        """Transform `datums` (a multiple of batch_size of them) and serve them next."""
        if self.has_new_data:
            raise MinicaffeError(f"{self.owner}: cannot add data until the current data has "
                                 f"been consumed")
        datums = list(datums)
        if not datums:
            raise MinicaffeError(f"{self.owner}: there is no datum to add")
        if len(datums) % self.batch_size:
            raise MinicaffeError(f"{self.owner}: {len(datums)} datums; the added data must be "
                                 f"a multiple of batch_size {self.batch_size}")
        arrays = [self.transformer.datum_to_array(d, name=f"{self.owner}: datum {i}")
                  for i, d in enumerate(datums)]
        for i, a in enumerate(arrays):
            if a.shape != arrays[0].shape:
                raise MinicaffeError(f"{self.owner}: datum {i} is {a.shape} (C, H, W) but datum "
                                     f"0 is {arrays[0].shape}")
        out_shape = self.transformer.output_shape(arrays[0].shape)
        if out_shape != self.item_shape:
            raise MinicaffeError(f"{self.owner}: datums of {arrays[0].shape} (C, H, W) become "
                                 f"{out_shape} after the transform, but memory_data_param says "
                                 f"{self.item_shape}")
        data = np.ascontiguousarray(self.transformer.transform(np.stack(arrays)),
                                    dtype=np.float32)
        labels = np.array([d.label for d in datums], dtype=np.float32)
        # Our own copy (Caffe's added_data_), so no Reset warning about transforms applies.
        self.data, self.labels, self.n, self.pos = data, labels, len(datums), 0
        self.has_new_data = True

    def set_batch_size(self, batch_size: int) -> None:
        if self.has_new_data:
            raise MinicaffeError(f"{self.owner}: cannot change batch_size until the current "
                                 f"data has been consumed")
        if int(batch_size) <= 0:
            raise MinicaffeError(f"{self.owner}: batch_size must be positive, got {batch_size}")
        self.batch_size = int(batch_size)

    def reshape(self, bottom, top):
        pass  # forward shapes the tops, as Caffe's BaseDataLayer does

    def forward_cpu(self, bottom, top):
        if self.data is None:
            raise MinicaffeError(f"{self.owner}: no data to serve; call net.set_input_arrays("
                                 f"data, labels) (or the layer's reset / add_datum_vector) first")
        b = self.batch_size
        if self.pos + b > self.n:  # set_batch_size to a size that does not divide N
            raise MinicaffeError(f"{self.owner}: {self.n} items are not a multiple of "
                                 f"batch_size {b}; set new arrays")
        top[0].reshape(b, *self.item_shape)
        top[1].reshape(b, 1, 1, 1)
        top[0].mutable_cpu_data()[...] = self.data[self.pos:self.pos + b]
        top[1].mutable_cpu_data()[...] = self.labels[self.pos:self.pos + b].reshape(b, 1, 1, 1)
        self.pos = (self.pos + b) % self.n
        if self.pos == 0:
            self.has_new_data = False

    def backward_cpu(self, top, propagate_down, bottom):
        """No bottoms: nothing to propagate."""

    forward_gpu, backward_gpu = forward_cpu, backward_cpu

    def allow_force_backward(self, bottom_index):
        return False
