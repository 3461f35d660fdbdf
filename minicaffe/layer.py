"""Layer: the unit of computation, and the registry that builds layers by Caffe type name.

Every layer keeps Caffe's contract (`layer.hpp`):

* `setup(bottom, top)` is called once by the Net. It checks the number of blobs,
  calls `layer_setup` (read parameters, create learnable `blobs`), then `reshape`
  (size the tops from the bottoms), then records the loss weight of each top.
  Subclasses never override `setup`; they implement the steps.
* `forward(bottom, top)` reshapes, runs `forward_cpu` or `forward_gpu` by the current
  mode, and returns this layer's contribution to the loss.
* `backward(top, propagate_down, bottom)` runs `backward_cpu` or `backward_gpu`:
  read the tops' diff, write the bottoms' diff where `propagate_down[i]`, and
  accumulate parameter gradients into `self.blobs[k].diff` (the Net zeroes them once
  per iteration, which is what lets `iter_size` accumulate).

A layer class declares its Caffe `type` and its blob counts as class attributes and
registers itself with `@register_layer`; `create_layer(layer_param)` builds one.
"""
from __future__ import annotations

from minicaffe import common
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError, did_you_mean

_REGISTRY: dict[str, type["Layer"]] = {}


class Layer:
    """Base class of every layer; see the module docstring for the contract."""

    type = ""
    # Blob-count rules, checked by `setup`; -1 means "no rule".
    exact_num_bottom_blobs = -1
    min_bottom_blobs = -1
    max_bottom_blobs = -1
    exact_num_top_blobs = -1
    min_top_blobs = -1
    max_top_blobs = -1
    equal_num_bottom_top_blobs = False
    # Net creates anonymous tops up to the required count (loss layers written without a top).
    auto_top_blobs = False
    # Loss layers weigh their first top 1 in the objective unless told otherwise.
    default_loss_weight = 0.0

    def __init__(self, layer_param):
        self.layer_param = layer_param
        self.name = layer_param.name
        self.phase = layer_param.phase
        self.blobs: list[Blob] = []
        # Learnable blobs given in the prototxt (or a caffemodel merged into it).
        for proto in layer_param.blobs:
            blob = Blob(name=f"{self.name}[{len(self.blobs)}]")
            blob.from_proto(proto)
            self.blobs.append(blob)
        self.param_propagate_down: list[bool] = []
        self.loss_weights: list[float] = []
        # Which bottoms a backward pass may ever be asked to fill, once a Net has worked it
        # out (Caffe's bottom_need_backward); None, for a layer used on its own, means any.
        self.bottom_need_backward: list[bool] | None = None
        # Whether a Net will ever run this layer's backward (Caffe's layer_need_backward);
        # None, for a layer used on its own, means it may.
        self.backward_runs: bool | None = None

    # ---- the template methods the Net calls
    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.check_blob_counts(bottom, top)
        self.layer_setup(bottom, top)
        self.reshape(bottom, top)
        self.set_loss_weights(top)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> float:
        for blob in bottom:
            if blob.count == 0:  # e.g. an Input of batch 0; Caffe fails a CHECK on such a blob
                raise MinicaffeError(f"{self.type} layer {self.name!r}: bottom {blob.name!r} of "
                                     f"shape {blob.shape} is empty; there is nothing to compute on")
        self.reshape(bottom, top)
        try:
            if common.mode() == common.GPU:
                self.forward_gpu(bottom, top)
            else:
                self.forward_cpu(bottom, top)
        except MemoryError as err:  # work buffers beyond the blobs (columns, padded canvases)
            raise MinicaffeError(f"{self.type} layer {self.name!r}: out of memory in forward "
                                 f"with bottom shapes {[b.shape for b in bottom]}: {err}") from None
        loss = 0.0
        for blob, weight in zip(top, self.loss_weights):
            if weight:
                loss += weight * float(blob.cpu_data().sum())
        return loss

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if common.mode() == common.GPU:
            self.backward_gpu(top, propagate_down, bottom)
        else:
            self.backward_cpu(top, propagate_down, bottom)

    # ---- what a layer implements
    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        """Read parameters and create `self.blobs`; called once."""

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement reshape")

    def forward_cpu(self, bottom: list[Blob], top: list[Blob]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement forward_cpu")

    def backward_cpu(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement backward_cpu")

    def forward_gpu(self, bottom: list[Blob], top: list[Blob]) -> None:
        raise MinicaffeError(f"{self.type} layer {self.name!r} has no OpenCL implementation")

    def backward_gpu(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        raise MinicaffeError(f"{self.type} layer {self.name!r} has no OpenCL implementation")

    @classmethod
    def has_gpu(cls) -> bool:
        return cls.forward_gpu is not Layer.forward_gpu

    def allow_force_backward(self, bottom_index: int) -> bool:
        """False for bottoms that can never take a gradient (labels, for instance)."""
        return True

    # ---- helpers
    def check_blob_counts(self, bottom: list[Blob], top: list[Blob]) -> None:
        def fail(what: str, rule: str, n: int, got: int):
            raise MinicaffeError(f"{self.type} layer {self.name!r} takes {rule} {n} {what} "
                                 f"blob(s), got {got}")
        nb, nt = len(bottom), len(top)
        if self.exact_num_bottom_blobs >= 0 and nb != self.exact_num_bottom_blobs:
            fail("bottom", "exactly", self.exact_num_bottom_blobs, nb)
        if self.min_bottom_blobs >= 0 and nb < self.min_bottom_blobs:
            fail("bottom", "at least", self.min_bottom_blobs, nb)
        if self.max_bottom_blobs >= 0 and nb > self.max_bottom_blobs:
            fail("bottom", "at most", self.max_bottom_blobs, nb)
        if self.exact_num_top_blobs >= 0 and nt != self.exact_num_top_blobs:
            fail("top", "exactly", self.exact_num_top_blobs, nt)
        if self.min_top_blobs >= 0 and nt < self.min_top_blobs:
            fail("top", "at least", self.min_top_blobs, nt)
        if self.max_top_blobs >= 0 and nt > self.max_top_blobs:
            fail("top", "at most", self.max_top_blobs, nt)
        if self.equal_num_bottom_top_blobs and nb != nt:
            raise MinicaffeError(f"{self.type} layer {self.name!r} needs as many tops as bottoms, "
                                 f"got {nb} bottom(s) and {nt} top(s)")

    def set_loss_weights(self, top: list[Blob]) -> None:
        """Record each top's weight in the objective and seed its diff with it.

        Seeding diff with the weight is Caffe's trick: backward then starts from
        dE/dtop = loss_weight without a special case for loss layers.
        """
        weights = list(self.layer_param.loss_weight)
        if weights and len(weights) != len(top):
            raise MinicaffeError(f"layer {self.name!r}: {len(weights)} loss_weight value(s) for "
                                 f"{len(top)} top blob(s); give one per top")
        if not weights:
            weights = [self.default_loss_weight] + [0.0] * (len(top) - 1) if top else []
        self.loss_weights = weights
        for blob, weight in zip(top, weights):
            if weight:
                blob.mutable_cpu_diff()[...] = weight

    def loss_weight(self, top_index: int) -> float:
        return self.loss_weights[top_index] if top_index < len(self.loss_weights) else 0.0

    def param_propagate(self, index: int) -> bool:
        return self.param_propagate_down[index] if index < len(self.param_propagate_down) else False

    def backward_may_need(self, index: int = 0) -> bool:
        """Whether backward may ever be asked for bottom `index`'s diff. A layer may skip
        work that serves only that gradient (a mask, a saved copy) when it is False: in a
        deploy or test net, say, where no loss learns from anything below the layer."""
        need = self.bottom_need_backward
        return need is None or (index < len(need) and need[index])

    def param_may_need(self, index: int) -> bool:
        """Whether backward may ever be asked for parameter blob `index`'s diff: the blob
        learns (`param_propagate`: lr_mult != 0, or force_backward) *and* the Net runs this
        layer's backward at all. A deploy net keeps lr_mult 1 on every weight but has no
        loss, so it never runs backward: there the work serving that diff may be skipped."""
        return self.param_propagate(index) and self.backward_runs is not False

    def __repr__(self) -> str:
        return f"<{self.type} layer {self.name!r}>"


def register_layer(cls: type[Layer]) -> type[Layer]:
    """Class decorator: make `cls` buildable by its Caffe `type` name."""
    if not cls.type:
        raise TypeError(f"{cls.__name__} has no `type`")
    if cls.type in _REGISTRY and _REGISTRY[cls.type] is not cls:
        raise TypeError(f"layer type {cls.type!r} registered twice")
    _REGISTRY[cls.type] = cls
    return cls


def layer_registry() -> dict[str, type[Layer]]:
    """Every registered layer type, by Caffe type name.

    The contract knows no implementation: importing `minicaffe.layers` (which `import
    minicaffe` does) runs each layer module's `@register_layer`.
    """
    return dict(_REGISTRY)


def create_layer(layer_param) -> Layer:
    """Build the layer a LayerParameter describes (Caffe's LayerRegistry::CreateLayer)."""
    cls = _REGISTRY.get(layer_param.type)
    if cls is None:
        raise MinicaffeError(
            f"layer {layer_param.name!r}: unknown layer type {layer_param.type!r}."
            f"{did_you_mean(layer_param.type, _REGISTRY)} Known types: {', '.join(sorted(_REGISTRY))}.")
    return cls(layer_param)
