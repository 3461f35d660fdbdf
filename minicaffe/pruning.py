r"""Magnitude pruning: zero the smallest weights, then fine-tune with them held at zero.

**The idea.** A trained net has many weights close to zero, and removing them changes
its outputs little. *Magnitude pruning* keeps the weights of largest $|w|$ and sets the
others to zero, for good: a binary **mask** $m$ (1 = kept, 0 = pruned) is fixed once, and
from then on the net computes with $w \odot m$. Han, Pool, Tran and Dally ("Learning both
Weights and Connections for Efficient Neural Networks", NIPS 2015) made it work on deep
nets with three steps, and it became the first stage of *Deep Compression* (Han, Mao and
Dally, ICLR 2016: prune, then quantize the survivors, then Huffman-code them):

1. train the dense net as usual;
2. prune: zero every weight below a threshold;
3. fine-tune the pruned net, **keeping pruned weights at zero**, with a lower rate.

They report keeping 8% of LeNet-5's weights (12x fewer) with no loss of accuracy.

**Sparsity.** The sparsity $S$ is the fraction of weights set to zero. Given $S$, the
threshold is whatever magnitude leaves exactly $k = \lfloor S n + \tfrac12 \rfloor$ of the
$n$ weights below it (`magnitude_mask`). Ties: weights of equal magnitude are pruned in
the order they are stored (flat index), so the count is always exactly $k$, and the
result does not depend on the sort used. A weight that is already 0 is among the first
pruned.

**Per layer or global.** With *per-layer* thresholds (the default) every pruned blob
loses the same fraction $S$ of its values. With one *global* threshold over all the
selected weights (`scope="global"`), the $k = \lfloor S N + \tfrac12 \rfloor$ smallest of
all $N$ go, wherever they are: layers whose weights are small in magnitude (typically
the big fully connected ones, whose fan-in is large so each weight is small) lose more
than $S$, layers with large weights (the first convolution, 500 weights that see the
raw pixels) less. A global threshold compares weights whose scales differ from layer to
layer, which is why Han et al. prune layer by layer, each layer's threshold chosen from
its sensitivity to pruning; a uniform per-layer $S$ can, on the other hand, cut a small
and sensitive layer as hard as a large and redundant one. `minicaffe prune` offers both;
`docs/pruning.md` measures them on LeNet.

**Weights only.** By default only the *weights* are pruned: the parameter blobs with two
axes or more (convolution filters, fully connected matrices, embeddings). Biases and the
other one-axis parameters (Scale's factors, PReLU's slopes; BatchNorm's statistics are
not learned at all) are kept, for two reasons: they are few (LeNet has 431,080 weights
and 580 biases), so pruning them saves next to nothing, and each one acts on a whole
output channel, so zeroing one shifts every value of that channel, which costs more
accuracy than zeroing any single weight. `include_biases=True` prunes them too.

**Why fine-tuning recovers the accuracy.** Pruning moves the net away from the minimum
that training found; the surviving weights were tuned to work *with* the pruned ones.
Training again, with the mask applied after every update, lets the survivors take over
the work of the removed connections: the gradient still flows through them, the pruned
weights are just not allowed to move. Starting from the trained survivors (not from a
new initialisation) matters: it keeps what was learned, and it needs few iterations
(1000 here, a tenth of LeNet's training) at a lowered learning rate, so as not to leave
the good region.

**Keeping the mask applied.** `attach(solver, masks)` zeroes the pruned weights at once
and then again after every `apply_update`, on whichever engine trains: on the host as
`w *= m`, on the device with the same product in OpenCL (`opencl.mul`, math.cl's
`mul_kernel`), on the device buffers, with the mask uploaded once and kept there. So
whatever the solver does (momentum, Adam's moments, weight decay), a pruned weight is
exactly 0 after each iteration. (The solver's history for a pruned weight keeps
integrating its gradient, which is harmless: it only reaches that weight, and the mask
removes it there. Weight decay on a zero weight adds nothing, in L2 and in L1 alike.)

**Dense storage.** minicaffe's engines compute with dense arrays, so a pruned net is
exactly as fast as the dense one and its .caffemodel exactly as large: zeros are stored
like any float. The saving needs a sparse format (Deep Compression stores each kept
weight with the gap to the previous one) or a general compressor; `docs/pruning.md`
reports what gzip makes of the files.

**The mask file** is HDF5, in the layout of Caffe's `.caffemodel.h5`:

    /mask/<layer name>/<j>    uint8, the shape of param j of the layer; 1 = kept, 0 = pruned
    attributes of /           format = "minicaffe pruning mask", version = 1,
                              sparsity (the S asked for), scope ("layer" or "global")

Only pruned parameters have a dataset; a layer named `a/b` is the group path `a/b`, as
in `.caffemodel.h5`. In Python a mask set is a dict from `"<layer>/<j>"` to a boolean
array (True = kept). Files are written atomically (built in memory, then
`protoio.write_atomic`).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from minicaffe import common
from minicaffe.common import MinicaffeError

logger = logging.getLogger(__name__)

MASK_GROUP = "mask"
FORMAT = "minicaffe pruning mask"
VERSION = 1
SCOPES = ("layer", "global")


# ---------------------------------------------------------------- which parameters

@dataclass(frozen=True)
class Target:
    """One parameter blob to prune: param `index` of layer `layer`."""
    layer: str
    index: int
    blob: object  # minicaffe.blob.Blob

    @property
    def key(self) -> str:
        return mask_key(self.layer, self.index)


def mask_key(layer: str, index: int) -> str:
    """The name of a parameter's mask: `<layer>/<index>`, e.g. "conv1/0"."""
    return f"{layer}/{index}"


def split_key(key: str) -> tuple[str, int]:
    layer, _, index = key.rpartition("/")
    if not layer or not index.isdigit():
        raise MinicaffeError(f"mask name {key!r} is not <layer>/<param index>")
    return layer, int(index)


def is_weight(blob) -> bool:
    """Weights have two axes or more; biases and per-channel factors have one (or none)."""
    return len(blob.shape) >= 2


def targets(net, layers=None, include_biases: bool = False) -> list[Target]:
    """The parameter blobs to prune, in the net's order.

    Each blob is listed once, under the layer that owns it (a layer that shares another's
    parameters through `param { name }` adds nothing). `layers` (names) restricts the
    choice; a name the net lacks, or a layer with nothing to prune, is an error.
    """
    owned = [(r.owner, r.index, r.blob) for r in net.param_records]
    with_params = list(dict.fromkeys(owner for owner, _, _ in owned))
    if layers is not None:
        layers = list(dict.fromkeys(layers))
        for name in layers:
            if name not in net.layer_dict:
                raise MinicaffeError(f"net {net.name!r} has no layer {name!r}; its layers with "
                                     f"parameters are: {', '.join(with_params) or 'none'}."
                                     f"{common.did_you_mean(name, with_params)}")
            if name not in with_params:
                shared = bool(net.layer_dict[name].blobs)
                why = ("shares all its parameters with another layer (prune the layer that owns them)"
                       if shared else "has no parameters")
                raise MinicaffeError(f"layer {name!r} of net {net.name!r} {why}; its layers with "
                                     f"parameters are: {', '.join(with_params) or 'none'}")
    chosen = [Target(owner, index, blob) for owner, index, blob in owned
              if (layers is None or owner in layers) and (include_biases or is_weight(blob))]
    if layers is not None and not include_biases:
        for name in layers:
            if not any(t.layer == name for t in chosen):
                raise MinicaffeError(f"layer {name!r} of net {net.name!r} has no weights to prune, "
                                     "only one-axis parameters (biases, per-channel factors); prune "
                                     "them with --include-biases")
    return chosen


# ---------------------------------------------------------------- computing masks

def check_sparsity(sparsity) -> float:
    """A sparsity is a fraction in [0, 1): 0.9 zeroes 90% of the weights."""
    try:
        value = float(sparsity)
    except (TypeError, ValueError):
        raise MinicaffeError(f"sparsity must be a number in [0, 1), got {sparsity!r}") from None
    if not (0.0 <= value < 1.0):  # also refuses NaN
        hint = f" (for {value:g}%, give {value / 100:g})" if 1.0 <= value <= 100.0 else ""
        raise MinicaffeError(f"sparsity must be a fraction in [0, 1), the share of weights to "
                             f"zero (0.9 prunes 90%), got {sparsity!r}{hint}")
    return value


def pruned_count(n: int, sparsity: float) -> int:
    """How many of n values sparsity S prunes: S n rounded to the nearest, halves up."""
    return min(n, int(math.floor(sparsity * n + 0.5)))


def magnitude_mask(values: np.ndarray, sparsity: float) -> np.ndarray:
    """The mask (True = kept) that prunes the `pruned_count` smallest |values|.

    Equal magnitudes are pruned in flat-index order: a stable sort of |values|.
    """
    values = np.asarray(values)
    k = pruned_count(values.size, check_sparsity(sparsity))
    order = np.argsort(np.abs(values), axis=None, kind="stable")
    kept = np.ones(values.size, dtype=bool)
    kept[order[:k]] = False
    return kept.reshape(values.shape)


def compute_masks(net, sparsity: float, layers=None, scope: str = "layer",
                  include_biases: bool = False) -> dict[str, np.ndarray]:
    """Masks (`"<layer>/<j>"` -> bool array, True = kept) at `sparsity`, per layer or global.

    Per layer: every selected blob loses the same fraction. Global: one threshold over all
    of them, ties broken by the net's order, then by flat index.
    """
    sparsity = check_sparsity(sparsity)
    if scope not in SCOPES:
        raise MinicaffeError(f"pruning scope must be one of {SCOPES}, got {scope!r}")
    chosen = targets(net, layers, include_biases)
    if not chosen:
        raise MinicaffeError(f"net {net.name!r} has no weights to prune")
    if scope == "layer":
        return {t.key: magnitude_mask(t.blob.cpu_data(), sparsity) for t in chosen}
    flat = np.concatenate([np.asarray(t.blob.cpu_data()).ravel() for t in chosen])
    kept = magnitude_mask(flat, sparsity)
    masks, start = {}, 0
    for t in chosen:
        masks[t.key] = kept[start:start + t.blob.count].reshape(t.blob.shape)
        start += t.blob.count
    return masks


# ---------------------------------------------------------------- masks and nets

def check_masks(net, masks: dict, where: str = "the masks") -> None:
    """Every mask must name a parameter of `net` and have its shape."""
    with_params = [name for name, layer in net.layer_dict.items() if layer.blobs]
    for key, mask in masks.items():
        layer, index = split_key(key)
        if layer not in net.layer_dict:
            raise MinicaffeError(f"{where}: mask {key!r} is for layer {layer!r}, which net {net.name!r} "
                                 f"does not have (its layers with parameters: "
                                 f"{', '.join(with_params) or 'none'}); the mask belongs to another net")
        blobs = net.layer_dict[layer].blobs
        if index >= len(blobs):
            raise MinicaffeError(f"{where}: mask {key!r} is for param {index} of layer {layer!r}, "
                                 f"which has {len(blobs)} parameter blob(s) in net {net.name!r}")
        if tuple(np.shape(mask)) != tuple(blobs[index].shape):
            raise MinicaffeError(f"{where}: mask {key!r} has shape {tuple(np.shape(mask))}, but param "
                                 f"{index} of layer {layer!r} has shape {tuple(blobs[index].shape)} in net "
                                 f"{net.name!r}; the mask belongs to another net")


def parameter(net, key: str):
    layer, index = split_key(key)
    return net.layer_dict[layer].blobs[index]


def apply_masks(net, masks: dict, where: str = "the masks") -> None:
    """Zero the pruned weights of `net` once (on the host; the device copies on next use)."""
    check_masks(net, masks, where)
    for key, mask in masks.items():
        parameter(net, key).mutable_cpu_data()[~np.asarray(mask, dtype=bool)] = 0


def prune(net, sparsity: float, layers=None, scope: str = "layer",
          include_biases: bool = False) -> dict[str, np.ndarray]:
    """Compute the masks for `net` at `sparsity` and zero its pruned weights; return the masks."""
    masks = compute_masks(net, sparsity, layers, scope, include_biases)
    apply_masks(net, masks)
    return masks


def sparsity_of(values) -> float:
    """The fraction of exact zeros in `values` (0 for an empty array)."""
    values = np.asarray(values)
    return float(np.count_nonzero(values == 0)) / values.size if values.size else 0.0


def report(net, masks: dict) -> list[dict]:
    """Per mask: layer, param, values, pruned, sparsity, and threshold: the largest |w| that
    the mask prunes, read from the net's current weights (so call it before pruning them)."""
    rows = []
    for key, mask in masks.items():
        layer, index = split_key(key)
        mask = np.asarray(mask, dtype=bool)
        pruned = int(mask.size - np.count_nonzero(mask))
        values = np.abs(parameter(net, key).cpu_data())[~mask]
        rows.append({"layer": layer, "param": index, "values": int(mask.size), "pruned": pruned,
                     "sparsity": pruned / mask.size if mask.size else 0.0,
                     "threshold": float(values.max()) if values.size else None})
    return rows


# ---------------------------------------------------------------- the mask file

def save_masks(path, masks: dict, sparsity: float | None = None, scope: str | None = None) -> None:
    """Write `masks` to an HDF5 mask file (layout in the module docstring), atomically."""
    from minicaffe import protoio
    from minicaffe.io import hdf5

    def write(f):
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        if sparsity is not None:
            f.attrs["sparsity"] = float(sparsity)
        if scope is not None:
            f.attrs["scope"] = scope
        group = f.create_group(MASK_GROUP)
        for key, mask in masks.items():
            layer, index = split_key(key)
            group.require_group(layer).create_dataset(str(index), data=np.asarray(mask, dtype=np.uint8))
    protoio.write_atomic(path, hdf5.to_bytes(write))


def load_masks(path) -> dict[str, np.ndarray]:
    """Read a mask file written by `save_masks` (or `minicaffe prune`)."""
    import h5py

    from minicaffe.io import hdf5

    where = str(path)
    masks: dict[str, np.ndarray] = {}
    with hdf5.open_for_reading(path, "reading pruning masks") as f:
        group = f.get(MASK_GROUP)
        if f.attrs.get("format") != FORMAT or not isinstance(group, h5py.Group):
            raise MinicaffeError(f"{where}: not a pruning mask file (no group '/{MASK_GROUP}' and "
                                 f"attribute format = {FORMAT!r}); `minicaffe prune` writes them")
        version = int(f.attrs.get("version", 0))
        if version != VERSION:
            raise MinicaffeError(f"{where}: mask file version {version}; this minicaffe reads "
                                 f"version {VERSION}")

        def visit(name, item):
            if not isinstance(item, h5py.Dataset):
                return
            layer, _, index = name.rpartition("/")
            if not layer or not index.isdigit():
                raise MinicaffeError(f"{where}: dataset '/{MASK_GROUP}/{name}' is not "
                                     f"/{MASK_GROUP}/<layer>/<param index>")
            values = item[()]
            if not (np.issubdtype(values.dtype, np.integer) or values.dtype == np.bool_) or \
                    not np.isin(values, (0, 1)).all():
                raise MinicaffeError(f"{where}: mask '/{MASK_GROUP}/{name}' must hold only 0 "
                                     "(pruned) and 1 (kept)")
            masks[mask_key(layer, int(index))] = values.astype(bool)
        group.visititems(visit)
    if not masks:
        raise MinicaffeError(f"{where}: the mask file holds no masks")
    return masks


# ---------------------------------------------------------------- keeping masks applied

class MaskedParameters:
    """The masks of one net, ready to apply on either engine after every update.

    Each mask is kept as float32 0/1 values in a SyncedMemory: on the host it multiplies
    the weights in numpy, on the device it is uploaded on first use and stays there, so
    applying it moves no data between host and device.
    """

    def __init__(self, net, masks: dict, where: str = "the masks"):
        from minicaffe.syncedmem import SyncedMemory

        check_masks(net, masks, where)
        self.entries = []
        for key, mask in masks.items():
            blob = parameter(net, key)
            memory = SyncedMemory(blob.count)
            memory.set_cpu_data(np.asarray(mask, dtype=np.float32).ravel().copy())
            self.entries.append((key, blob, memory))
        self.kept = sum(int(m.cpu_data().sum()) for _, _, m in self.entries)
        self.total = sum(b.count for _, b, _ in self.entries)

    def apply(self) -> None:
        """w = w * m for every masked parameter, on the engine of the current mode."""
        if common.mode() == common.GPU:
            from minicaffe import opencl
            for _, blob, memory in self.entries:
                data = blob.mutable_gpu_data()
                opencl.mul(blob.count, data, memory.gpu_data(), data)
        else:
            for _, blob, memory in self.entries:
                w = blob.mutable_cpu_data()
                np.multiply(w, memory.cpu_data().reshape(w.shape), out=w)


def attach(solver, masks: dict, where: str = "the masks") -> MaskedParameters:
    """Prune `solver`'s train net by `masks` now, and again after every update.

    The solver's `apply_update` is wrapped, so every caller of it (Solver.step, a script
    driving the solver itself) gets the masked update. The test nets share the train
    net's weights, so they see the pruned values too.
    """
    masked = MaskedParameters(solver.net, masks, where)
    masked.apply()
    update = solver.apply_update

    def apply_update_then_mask():
        update()
        masked.apply()

    solver.apply_update = apply_update_then_mask
    solver.pruning_masks = masked
    logger.info("Pruning masks from %s: %d of %d values of %d parameter blob(s) held at zero",
                where, masked.total - masked.kept, masked.total, len(masked.entries))
    return masked
