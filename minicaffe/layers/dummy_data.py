r"""DummyData: tops of a fixed shape filled by fillers, for tests and benchmarks.

Caffe: `dummy_data_layer.cpp`. No device twin: the fillers write the host copy, which
the next layer's kernel copies in, so forward_gpu is forward_cpu (as in Caffe, whose
DummyData has no GPU code either).
"""
from __future__ import annotations

from minicaffe.common import MinicaffeError
from minicaffe.filler import fill
from minicaffe.layer import Layer, register_layer
from minicaffe.proto import caffe_pb2

LEGACY_DIMS = ("num", "channels", "height", "width")
# Caffe's GetFiller knows these; an unknown type fails at setup, as there.
FILLER_TYPES = ("constant", "uniform", "gaussian", "xavier", "msra", "positive_unitball",
                "bilinear")


@register_layer
class DummyDataLayer(Layer):
    r"""Produce tops of the shapes in `dummy_data_param`, filled by its `data_filler`s.

    Shapes: `shape` once (every top) or once per top; or the legacy 4-D fields `num`,
    `channels`, `height`, `width`, each once or once per top (not both kinds).

    Fillers: none (every top is zeros), one for every top, or one per top. A top whose
    filler is `constant` is filled once, at setup, and never again, so a value written
    into it later stays; any other filler (uniform, gaussian, ...) draws new values on
    every forward, and leaves its top at zero until the first forward. That is Caffe's
    rule, which saves refilling constant tops every iteration.

    The shapes are fixed at setup: reshape does nothing. No backward (no bottoms).

        layer { name: "data" type: "DummyData" top: "data" top: "label"
                dummy_data_param {
                  shape { dim: 64 dim: 1 dim: 28 dim: 28 } shape { dim: 64 }
                  data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" } } }
    """

    type = "DummyData"
    exact_num_bottom_blobs = 0
    min_top_blobs = 1

    def layer_setup(self, bottom, top):
        p = self.layer_param.dummy_data_param
        owner = f"{self.type} layer {self.name!r}"
        num_top, num_fillers = len(top), len(p.data_filler)
        if num_fillers not in (0, 1, num_top):
            raise MinicaffeError(f"{owner}: give data_filler 0 times, once, or once per top "
                                 f"blob ({num_top}); got {num_fillers}")
        legacy = any(len(getattr(p, field)) for field in LEGACY_DIMS)
        if legacy:
            if len(p.shape):
                raise MinicaffeError(f"{owner}: both shape and the legacy num/channels/height/"
                                     f"width fields are given; use one or the other")
            for field in LEGACY_DIMS:
                if len(getattr(p, field)) not in (1, num_top):
                    raise MinicaffeError(
                        f"{owner}: give {field} once, or once per top blob ({num_top}); got "
                        f"{len(getattr(p, field))} (the legacy fields need all four of "
                        f"num, channels, height, width)")
        elif len(p.shape) not in (1, num_top):
            raise MinicaffeError(f"{owner}: give shape once, or once per top blob "
                                 f"({num_top}); got {len(p.shape)}")

        # One filler shared by every top, or one per top. With none, a constant 0.
        if num_fillers <= 1:
            param = caffe_pb2.FillerParameter(type="constant", value=0)
            if num_fillers:
                param.CopyFrom(p.data_filler[0])
            self.fillers = [param]
        else:
            self.fillers = list(p.data_filler)
        for f in self.fillers:
            if f.type not in FILLER_TYPES:
                raise MinicaffeError(f"{owner}: unknown data_filler type {f.type!r}; known: "
                                     f"{', '.join(FILLER_TYPES)}")
        self.owner = owner
        self.refill = [f.type != "constant" for f in self.fillers]

        for i, blob in enumerate(top):
            if legacy:
                blob.reshape([getattr(p, f)[0 if len(getattr(p, f)) == 1 else i]
                              for f in LEGACY_DIMS])
            else:
                blob.reshape(tuple(p.shape[0 if len(p.shape) == 1 else i].dim))
        # Fill the constant tops now, once; forward fills only the others.
        for i, blob in enumerate(top):
            k = self._filler_index(i)
            if not self.refill[k]:
                self._fill(blob, k)

    def _filler_index(self, top_index: int) -> int:
        return top_index if len(self.fillers) > 1 else 0

    def _fill(self, blob, k: int) -> None:
        if blob.count:  # an empty top has nothing to fill (and fan-in would be 0/0)
            try:
                fill(blob, self.fillers[k])
            except MinicaffeError as err:  # e.g. bilinear on a top that is not 4-D
                raise MinicaffeError(f"{self.owner}: top {blob.name or k!r}: {err}") from None

    def reshape(self, bottom, top):
        pass  # shapes are fixed at setup, as in Caffe

    def forward_cpu(self, bottom, top):
        for i, blob in enumerate(top):
            k = self._filler_index(i)
            if self.refill[k]:
                self._fill(blob, k)

    def backward_cpu(self, top, propagate_down, bottom):
        """No bottoms: nothing to propagate."""

    forward_gpu, backward_gpu = forward_cpu, backward_cpu

    def allow_force_backward(self, bottom_index):
        return False
