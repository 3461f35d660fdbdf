"""Net: a DAG of layers wired by blob names, built from a NetParameter (Caffe's `net.cpp`).

Building a net from a prototxt takes these steps, in Caffe's order:

1. **Filter** (`filter_net`): keep the layers whose include/exclude rules match the
   net's state (phase TRAIN or TEST, a level, a set of stages). This is how one
   prototxt holds both the training and the testing network.
2. **Insert splits** (`insert_splits`): a blob read by several layers gets a Split
   layer, so that each reader gets its own diff and the gradients add up.
3. **Wire and set up**: walk the layers in order. Each bottom must name a blob some
   earlier layer produced; each top creates a blob, except *in place* tops
   (top == bottom, e.g. ReLU) which reuse it. Each layer's `setup` sizes its tops, so
   shape errors surface here, naming the layer. Learnable blobs are collected with
   their `lr_mult` / `decay_mult`; a named `param` shares one blob between layers.
4. **Decide who needs backward**: walking back from the losses, a layer needs
   backward only if a loss depends on it and something below it learns (or
   `force_backward` / `propagate_down` says otherwise).

Blobs nobody consumes are the net's outputs (the loss, the accuracy).
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minicaffe import common
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError, reworded
from minicaffe.layer import Layer, create_layer
from minicaffe.proto import caffe_pb2
from minicaffe import protoio
from minicaffe.io import hdf5
from minicaffe.upgrade import net_needs_upgrade, proto_shape_matches, upgrade_net_as_needed

log = logging.getLogger("minicaffe.net")

TRAIN, TEST = caffe_pb2.TRAIN, caffe_pb2.TEST
PHASES = {"TRAIN": TRAIN, "TEST": TEST}


def parse_phase(phase) -> int:
    """TRAIN / TEST from the enum value (pycaffe's caffe.TRAIN is 0) or its name."""
    if isinstance(phase, str) and phase.upper() in PHASES:
        return PHASES[phase.upper()]
    if isinstance(phase, int) and not isinstance(phase, bool) and phase in PHASES.values():
        return phase
    raise MinicaffeError(f"phase must be TRAIN or TEST (minicaffe.TRAIN / minicaffe.TEST, 0 / 1, "
                         f"or the strings 'TRAIN' / 'TEST'), got {phase!r}")


# ---------------------------------------------------------------- step 1: filtering

def state_meets_rule(state, rule) -> bool:
    """A NetStateRule is met when every condition it sets holds (Caffe's StateMeetsRule)."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    if any(s not in stages for s in rule.stage):
        return False
    if any(s in stages for s in rule.not_stage):
        return False
    return True


def filter_net(param):
    """The layers of `param` that the state `param.state` selects."""
    out = caffe_pb2.NetParameter()
    out.CopyFrom(param)
    del out.layer[:]
    for layer in param.layer:
        if layer.include and layer.exclude:
            raise MinicaffeError(f"layer {layer.name!r} specifies both include and exclude "
                                 "rules; use one or the other")
        if layer.include:
            keep = any(state_meets_rule(param.state, r) for r in layer.include)
        else:
            keep = not any(state_meets_rule(param.state, r) for r in layer.exclude)
        if keep:
            out.layer.add().CopyFrom(layer)
    return out


def check_engine(layer_param) -> None:
    """Caffe's `engine` field picks an implementation: DEFAULT or CAFFE are ours (numpy on
    the CPU, OpenCL on the device, by the solver mode); CUDNN does not exist here, and
    Caffe itself refuses an engine it was not built with."""
    for field, value in layer_param.ListFields():
        if field.message_type is None or "engine" not in field.message_type.fields_by_name:
            continue
        engine = field.message_type.fields_by_name["engine"].enum_type.values_by_number[value.engine].name
        if engine not in ("DEFAULT", "CAFFE"):
            raise MinicaffeError(f"layer {layer_param.name!r} ({layer_param.type}): {field.name}.engine "
                                 f"is {engine}, which minicaffe does not have; use DEFAULT or CAFFE "
                                 "(the solver mode then picks numpy or OpenCL)")


# ---------------------------------------------------------------- step 2: splits

def split_layer_name(layer: str, blob: str, top_index: int) -> str:
    return f"{blob}_{layer}_{top_index}_split"


def split_blob_name(layer: str, blob: str, top_index: int, split_index: int) -> str:
    return f"{blob}_{layer}_{top_index}_split_{split_index}"


def insert_splits(param):
    """Give every blob with more than one reader its own Split layer (Caffe's InsertSplits).

    A top with an explicit loss weight that is also read by another layer counts as
    one more reader: the Split's last top carries the loss, so the reader's diff and
    the loss gradient add instead of overwriting each other.
    """
    last_producer: dict[str, tuple[int, int]] = {}
    source_of_bottom: dict[tuple[int, int], tuple[int, int]] = {}
    readers: dict[tuple[int, int], int] = {}
    loss_weight_of: dict[tuple[int, int], float] = {}
    for i, layer in enumerate(param.layer):
        for j, name in enumerate(layer.bottom):
            if name not in last_producer:
                raise MinicaffeError(f"layer {layer.name!r} ({layer.type}): unknown bottom blob "
                                     f"{name!r} (bottom #{j}); no earlier layer produces it")
            source_of_bottom[(i, j)] = last_producer[name]
            readers[last_producer[name]] = readers.get(last_producer[name], 0) + 1
        for j, name in enumerate(layer.top):
            last_producer[name] = (i, j)
            if j < len(layer.loss_weight) and layer.loss_weight[j]:
                loss_weight_of[(i, j)] = layer.loss_weight[j]
                readers[(i, j)] = readers.get((i, j), 0) + 1

    out = caffe_pb2.NetParameter()
    out.CopyFrom(param)
    del out.layer[:]
    next_split: dict[tuple[int, int], int] = {}
    for i, layer in enumerate(param.layer):
        new = out.layer.add()
        new.CopyFrom(layer)
        for j, name in enumerate(layer.bottom):
            src = source_of_bottom[(i, j)]
            if readers[src] > 1:
                k = next_split.get(src, 0)
                next_split[src] = k + 1
                new.bottom[j] = split_blob_name(param.layer[src[0]].name, name, src[1], k)
        for j, name in enumerate(layer.top):
            count = readers.get((i, j), 0)
            if count > 1:
                split = caffe_pb2.LayerParameter(
                    name=split_layer_name(layer.name, name, j), type="Split", bottom=[name],
                    top=[split_blob_name(layer.name, name, j, k) for k in range(count)])
                weight = loss_weight_of.get((i, j), 0.0)
                if weight:
                    split.loss_weight.extend([0.0] * (count - 1) + [weight])
                    new.loss_weight[j] = 0.0
                out.layer.add().CopyFrom(split)
    return out


# ---------------------------------------------------------------- numbers for the logs

def _fmt(x: float) -> str:
    """A number as the logs print it (minicaffe.log.format_number: glog's 6 digits).

    Imported on first use: importing minicaffe.log installs the glog handler, which a
    plain `import minicaffe` leaves to the application.
    """
    from minicaffe.log import format_number
    return format_number(x)


def _mean_abs(values: np.ndarray) -> float:
    """asum / count, Caffe's measure of a blob in debug_info (NaN for an empty blob, as 0/0)."""
    if not values.size:
        return float("nan")
    return float(np.abs(values, dtype=np.float64).sum()) / values.size


def _all_finite(values: np.ndarray) -> bool:
    return bool(np.isfinite(values).all())


# ---------------------------------------------------------------- the Net's records
#
# Caffe keeps a net as parallel vectors indexed by layer id (layers_, bottom_vecs_,
# bottom_need_backward_, ...), by blob id and by param id. Here each layer, blob and
# learnable parameter is one record holding all that is known about it.

@dataclass(eq=False, slots=True)
class BlobRecord:
    """A blob between layers. An in-place layer (ReLU) reads and writes the same record."""
    name: str
    blob: Blob
    need_backward: bool = False  # a layer below it learns, so its diff is wanted
    loss_weight: float = 0.0     # its weight in the objective (summed over its writers)


@dataclass(eq=False, slots=True)
class LayerRecord:
    """A layer, the blobs it reads and writes, and what its backward pass computes."""
    name: str
    layer: Layer
    bottoms: list[BlobRecord]
    tops: list[BlobRecord]
    bottom_need_backward: list[bool]  # Backward's propagate_down: which bottoms get a diff
    need_backward: bool = False       # whether Backward runs at all
    param_names: list[str] = field(default_factory=list)  # each param blob's `param { name }`, or its index
    # The Blobs alone, as the layer's forward / backward take them: built once, since
    # the forward and backward loops pass them at every iteration.
    bottom_vec: list[Blob] = field(init=False)
    top_vec: list[Blob] = field(init=False)

    def __post_init__(self) -> None:
        self.bottom_vec = [b.blob for b in self.bottoms]
        self.top_vec = [t.blob for t in self.tops]


@dataclass(eq=False, slots=True)
class ParamRecord:
    """A learnable parameter: a blob the solver updates, with its multipliers.

    Layers that share it through a `param { name }` use its memory, and may set the
    multipliers the owner left out, but not change one it gave.
    """
    blob: Blob
    owner: str  # the layer that made it, and the blob's index there (for the logs)
    index: int
    lr_mult: float
    decay_mult: float
    lr_mult_given: bool
    decay_mult_given: bool


# ---------------------------------------------------------------- the Net

class Net:
    """A network: layers, the blobs between them, and forward/backward over all of them.

    Built like pycaffe's `caffe.Net`:

        Net("lenet.prototxt", TEST)                      # phase
        Net("lenet.prototxt", "lenet.caffemodel", TEST)  # weights, phase
        Net("lenet.prototxt", TEST, weights="lenet.caffemodel")
        Net(net_parameter)                               # phase from net_parameter.state

    The phase is TRAIN or TEST (0 or 1, as in pycaffe), or the strings "TRAIN" / "TEST".

    The net is `layer_records` (in forward order), `blob_records` and `param_records`;
    `layers`, `blobs`, `params`, `learnable_params`, ... are pycaffe's views of them.
    """

    def __init__(self, model, *args, phase=None, weights=None, level=0, stages=(), source=None):
        if args and isinstance(args[0], (str, Path)) and str(args[0]).upper() not in PHASES:
            if len(args) == 1 and not Path(args[0]).exists():
                raise MinicaffeError(f"Net({str(model)!r}, {str(args[0])!r}): the second argument is "
                                     "neither a phase (TRAIN or TEST) nor an existing weights file")
            weights, args = args[0], args[1:]
        if args:
            phase = args[0]
        if len(args) > 1:
            raise TypeError("Net(model, [weights,] phase) takes at most three positional arguments")
        if phase is not None:
            phase = parse_phase(phase)

        if isinstance(model, caffe_pb2.NetParameter):
            param = caffe_pb2.NetParameter()
            param.CopyFrom(model)
            # Errors name where the NetParameter came from, when the caller knows.
            self.source = source or f"net {param.name!r}"
        else:
            param = protoio.read_net_param(model)
            self.source = str(model)
        # Files in an older Caffe format (V0/V1 layers, input fields, ...) are brought up
        # to date first, as Caffe does on reading them; see minicaffe.upgrade.
        upgrade_net_as_needed(param, self.source)
        if phase is not None:
            param.state.phase = phase
        if level:
            param.state.level = level
        param.state.stage.extend(s for s in stages if s not in param.state.stage)
        try:
            self._init(param)
        except MinicaffeError as err:
            raise reworded(err, f"{self.source}: {err}") from None
        if weights:
            self.copy_trained_layers_from(weights)

    # ---- construction
    def _init(self, in_param) -> None:
        self.phase = in_param.state.phase
        param = insert_splits(filter_net(in_param))
        self.name = param.name
        self.param = param
        # Log each layer's mean |value| as it runs (Caffe's debug_info); the solver
        # turns this on and off by its own debug_info field and display interval.
        self.debug_info = param.debug_info

        self.layer_records: list[LayerRecord] = []
        self.blob_records: list[BlobRecord] = []
        self.param_records: list[ParamRecord] = []
        self.layer_dict: OrderedDict[str, Layer] = OrderedDict()
        available: dict[str, BlobRecord] = {}  # made, and not yet read: in the end, the outputs
        made: set[str] = set()
        shared: dict[str, ParamRecord] = {}  # `param { name }` -> the parameter it names
        for layer_param in param.layer:
            name = layer_param.name
            if not layer_param.HasField("phase"):
                layer_param.phase = self.phase
            if layer_param.propagate_down and len(layer_param.propagate_down) != len(layer_param.bottom):
                raise MinicaffeError(
                    f"layer {name!r}: propagate_down has {len(layer_param.propagate_down)} "
                    f"value(s) but the layer has {len(layer_param.bottom)} bottom(s)")
            check_engine(layer_param)
            layer = create_layer(layer_param)
            if common.mode() == common.GPU and not layer.has_gpu():
                raise MinicaffeError(f"{layer.type} layer {layer.name!r} has no OpenCL kernel yet; "
                                     "run this net on the numpy engine (CPU mode)")
            # Caffe lets two layers share a name (examples/mnist/mnist_autoencoder.prototxt
            # has two named "loss"); a lookup by name finds the first, as Caffe's
            # CopyTrainedLayersFrom and ShareTrainedLayersWith do.
            self.layer_dict.setdefault(name, layer)

            # insert_splits has checked that each bottom names a blob an earlier layer
            # made, and given a blob with several readers a Split: each is read once.
            bottoms = [available.pop(blob_name) for blob_name in layer_param.bottom]
            bottom_need = list(layer_param.propagate_down) or [b.need_backward for b in bottoms]
            tops = []
            for j, blob_name in enumerate(layer_param.top):
                if j < len(bottoms) and layer_param.bottom[j] == blob_name:
                    top = bottoms[j]  # in place: the layer overwrites its bottom
                elif blob_name in made:
                    raise MinicaffeError(f"layer {name!r}: top blob {blob_name!r} is produced "
                                         "by more than one layer")
                else:
                    top = self._add_blob(blob_name)
                    made.add(blob_name)
                tops.append(top)
                available[blob_name] = top
            # A loss layer written without a top still needs one to hold its loss
            # (Caffe's AutoTopBlobs). The blob is anonymous: no other layer can read it
            # and it is not a net output, but its loss weight counts in the objective.
            if layer.auto_top_blobs:
                while len(tops) < max(layer.exact_num_top_blobs, layer.min_top_blobs):
                    tops.append(self._add_blob("(automatic)"))
            record = LayerRecord(name, layer, bottoms, tops, bottom_need)
            self.layer_records.append(record)

            log.info("Creating Layer %s", name)
            try:
                layer.setup(record.bottom_vec, record.top_vec)
            except MinicaffeError as err:
                raise reworded(err, f"{err} [while setting up layer {name!r} "
                                    f"with bottom shapes {[b.shape for b in record.bottom_vec]}]") from None
            except MemoryError as err:  # e.g. a typo in a batch size: name the layer, not numpy
                raise MinicaffeError(f"out of memory while setting up layer {name!r} ({layer_param.type}) "
                                     f"with bottom shapes {[b.shape for b in record.bottom_vec]}: {err}") from None
            log.info("Setting up %s", name)
            for j, top in enumerate(tops):
                top.loss_weight += layer.loss_weight(j)
                log.info("Top shape: %s", top.blob.shape_string())
                if layer.loss_weight(j):
                    log.info("    with loss weight %g", layer.loss_weight(j))

            if len(layer_param.param) > len(layer.blobs):
                raise MinicaffeError(f"layer {name!r}: {len(layer_param.param)} param "
                                     f"specs for {len(layer.blobs)} parameter blob(s)")
            if len(layer.param_propagate_down) < len(layer.blobs):
                layer.param_propagate_down = [True] * len(layer.blobs)
            need_backward = any(bottom_need)
            for param_id in range(len(layer.blobs)):
                spec = layer_param.param[param_id] if param_id < len(layer_param.param) else caffe_pb2.ParamSpec()
                layer.param_propagate_down[param_id] = spec.lr_mult != 0
                need_backward |= spec.lr_mult != 0
                self._add_param(record, param_id, spec, shared)
            record.need_backward = need_backward
            for top in tops:
                top.need_backward = need_backward

        self._decide_backward(param.force_backward)
        self._output_records = list(available.values())
        # pycaffe's views of the records
        self.layers = [r.layer for r in self.layer_records]
        self.layer_names = [r.name for r in self.layer_records]
        self.blob_names = [b.name for b in self.blob_records]
        self._layer_names, self._blob_names = self.layer_names, self.blob_names  # pycaffe's spelling
        self.blobs = OrderedDict((b.name, b.blob) for b in self.blob_records)
        self.params = OrderedDict((r.name, r.layer.blobs) for r in self.layer_records if r.layer.blobs)
        # what the solvers update, and how fast (Caffe's learnable_params, params_lr, ...)
        self.learnable_params = [p.blob for p in self.param_records]
        self.params_lr = [p.lr_mult for p in self.param_records]
        self.params_weight_decay = [p.decay_mult for p in self.param_records]
        log.info("Network initialization done.")

    def _add_blob(self, name: str) -> BlobRecord:
        record = BlobRecord(name, Blob(name=name))
        self.blob_records.append(record)
        return record

    def _add_param(self, record: LayerRecord, param_id: int, spec, shared: dict[str, ParamRecord]) -> None:
        """Make param blob `param_id` of `record`'s layer learnable, or, when its `param { name }`
        was seen before, share the memory of the blob that name already stands for."""
        blob = record.layer.blobs[param_id]
        name = spec.name
        record.param_names.append(name or str(param_id))
        if not name or name not in shared:
            # This layer owns the blob: it becomes a learnable parameter.
            owned = ParamRecord(blob, record.name, param_id, spec.lr_mult, spec.decay_mult,
                                spec.HasField("lr_mult"), spec.HasField("decay_mult"))
            self.param_records.append(owned)
            if name:
                shared[name] = owned
            return
        owner = shared[name]
        if spec.share_mode == caffe_pb2.ParamSpec.PERMISSIVE:
            if owner.blob.count != blob.count:
                raise MinicaffeError(f"layer {record.name!r}: shared parameter {name!r} has {blob.count} "
                                     f"values here but {owner.blob.count} in layer {owner.owner!r}")
        elif owner.blob.shape != blob.shape:
            raise MinicaffeError(f"layer {record.name!r}: shared parameter {name!r} has shape {blob.shape} "
                                 f"here but {owner.blob.shape} in its owner {owner.owner!r} "
                                 "(set share_mode: PERMISSIVE to share by count)")
        # A multiplier given here applies to the shared blob, unless its owner gave another.
        if spec.HasField("lr_mult"):
            if owner.lr_mult_given and owner.lr_mult != spec.lr_mult:
                raise MinicaffeError(f"layer {record.name!r}: shared parameter {name!r} has mismatched lr_mult")
            owner.lr_mult, owner.lr_mult_given = spec.lr_mult, True
        if spec.HasField("decay_mult"):
            if owner.decay_mult_given and owner.decay_mult != spec.decay_mult:
                raise MinicaffeError(f"layer {record.name!r}: shared parameter {name!r} has mismatched decay_mult")
            owner.decay_mult, owner.decay_mult_given = spec.decay_mult, True
        log.info("Sharing parameters '%s' owned by layer '%s', param index %d", name, owner.owner, owner.index)
        # The memory is shared; each layer keeps its own shape (PERMISSIVE sharing
        # lets a 2x3 weight and a 3x2 one use the same six values).
        blob.share_data(owner.blob)
        blob.share_diff(owner.blob)

    def _decide_backward(self, force_backward: bool) -> None:
        """Caffe's backward-need analysis, walking from the last layer to the first."""
        under_loss: set[str] = set()     # blobs some loss depends on
        skip_backprop: set[str] = set()  # blobs whose diff no layer computes
        for record in reversed(self.layer_records):
            layer = record.layer
            contributes_loss, skip_propagate = False, True
            for j, top in enumerate(record.tops):
                if layer.loss_weight(j) or top.name in under_loss:
                    contributes_loss = True
                if top.name not in skip_backprop:
                    skip_propagate = False
                if contributes_loss and not skip_propagate:
                    break
            if record.need_backward and skip_propagate:
                record.need_backward = False
                record.bottom_need_backward = [False] * len(record.bottoms)
            if not contributes_loss:
                record.need_backward = False
            log.info("%s %s backward computation.", record.name,
                     "needs" if record.need_backward else "does not need")
            for j, bottom in enumerate(record.bottoms):
                if contributes_loss:
                    under_loss.add(bottom.name)
                else:
                    record.bottom_need_backward[j] = False
                if not record.bottom_need_backward[j]:
                    skip_backprop.add(bottom.name)
        if force_backward:
            for record in self.layer_records:
                record.need_backward = True
                for j, bottom in enumerate(record.bottoms):
                    record.bottom_need_backward[j] |= record.layer.allow_force_backward(j)
                    bottom.need_backward |= record.bottom_need_backward[j]
                record.layer.param_propagate_down = [True] * len(record.layer.blobs)
        for record in self.layer_records:  # what each layer's backward may be asked for
            record.layer.bottom_need_backward = list(record.bottom_need_backward)
            record.layer.backward_runs = record.need_backward

    # ---- running
    def _layer_index(self, name, default: int) -> int:
        if name is None:
            return default
        if name not in self.layer_dict:
            raise MinicaffeError(f"net {self.name!r} has no layer named {name!r}")
        return self.layer_names.index(name)

    def forward_from_to(self, start: int, end: int) -> float:
        loss = 0.0
        for record in self.layer_records[start:end + 1]:
            loss += record.layer.forward(record.bottom_vec, record.top_vec)
            if self.debug_info:
                self.forward_debug_info(record)
        return loss

    def backward_from_to(self, start: int, end: int) -> None:
        for record in reversed(self.layer_records[end:start + 1]):
            if record.need_backward:
                record.layer.backward(record.top_vec, record.bottom_need_backward, record.bottom_vec)
                if self.debug_info:
                    self.backward_debug_info(record)

    def forward_loss(self) -> float:
        """One forward pass through every layer; returns the weighted loss."""
        return self.forward_from_to(0, len(self.layer_records) - 1)

    def backward_all(self) -> None:
        self.backward_from_to(len(self.layer_records) - 1, 0)
        if self.debug_info:
            self.params_debug_info()

    def forward_backward(self) -> float:
        loss = self.forward_loss()
        self.backward_all()
        return loss

    def clear_param_diffs(self) -> None:
        for blob in self.learnable_params:
            blob.zero_diff()

    def update(self) -> None:
        """data -= diff for every learnable parameter (the solver has prepared diff)."""
        for blob in self.learnable_params:
            blob.update()

    def reshape(self) -> None:
        for record in self.layer_records:
            record.layer.reshape(record.bottom_vec, record.top_vec)

    # ---- debug_info: what each layer computed, as Caffe logs it
    def forward_debug_info(self, record: LayerRecord) -> None:
        """`    [Forward] Layer ip1, top blob ip1 data: 0.31`, then one line per param blob.

        Values are mean absolute values (asum / count), as in Caffe's ForwardDebugInfo;
        a param blob goes by its `param { name }` when it has one, else by its index.
        """
        for top in record.tops:
            log.info("    [Forward] Layer %s, top blob %s data: %s",
                     record.name, top.name, _fmt(_mean_abs(top.blob.cpu_data())))
        for param_name, blob in zip(record.param_names, record.layer.blobs):
            log.info("    [Forward] Layer %s, param blob %s data: %s",
                     record.name, param_name, _fmt(_mean_abs(blob.cpu_data())))

    def backward_debug_info(self, record: LayerRecord) -> None:
        """`    [Backward] Layer ip1, bottom blob data diff: 0.01` for each bottom that takes a
        gradient, then each param blob that learns (by index, where Caffe's forward lines
        use the param's name)."""
        for bottom, need in zip(record.bottoms, record.bottom_need_backward):
            if need:
                log.info("    [Backward] Layer %s, bottom blob %s diff: %s",
                         record.name, bottom.name, _fmt(_mean_abs(bottom.blob.cpu_diff())))
        for param_id, blob in enumerate(record.layer.blobs):
            if record.layer.param_propagate(param_id):
                log.info("    [Backward] Layer %s, param blob %d diff: %s",
                         record.name, param_id, _fmt(_mean_abs(blob.cpu_diff())))

    def params_debug_info(self) -> None:
        """The L1 and L2 norms of all learnable params' data and diff, after a full backward.

        Caffe logs this line at ERROR severity (so it shows even with GLOG_minloglevel=1).
        """
        l1_data = l1_diff = sq_data = sq_diff = 0.0
        for blob in self.learnable_params:
            data, diff = blob.cpu_data().astype(np.float64), blob.cpu_diff().astype(np.float64)
            l1_data += float(np.abs(data).sum())
            l1_diff += float(np.abs(diff).sum())
            sq_data += float(np.square(data).sum())
            sq_diff += float(np.square(diff).sum())
        log.error("    [Backward] All net params (data, diff): L1 norm = (%s, %s); L2 norm = (%s, %s)",
                  _fmt(l1_data), _fmt(l1_diff), _fmt(np.sqrt(sq_data)), _fmt(np.sqrt(sq_diff)))

    # ---- non-finite values: where did they come from?
    def find_non_finite(self) -> str | None:
        """Where the last forward/backward pass first had a NaN or an infinity, in words;
        None when every weight, top and diff is finite.

        The solver calls this once the loss is non-finite, so it costs nothing while
        training goes well. It looks in the order the values came to be: the weights
        (there before the pass; an earlier update may have blown them up), then the tops
        in forward order, then, if every top is finite, the bottom and param diffs in
        backward order. It reads the blobs as the pass left them, which is exact for a
        blob that one layer writes; see `_first_non_finite_top` for in-place layers.
        """
        for record in self.layer_records:
            for param_id, blob in enumerate(record.layer.blobs):
                if not _all_finite(blob.cpu_data()):
                    return (f"the weights are not finite, starting with param blob {param_id} of "
                            f"layer {record.name!r} ({record.layer.type}): an earlier update "
                            "diverged (try a lower base_lr, or clip_gradients) or the weights "
                            "loaded were not finite")
        found = self._first_non_finite_top()
        if found is not None:
            record, top = found
            return (f"the first non-finite value appeared in the forward pass at layer "
                    f"{record.name!r} ({record.layer.type}), top blob {top.name!r}")
        # The backward pass is not re-run (param diffs would add up twice): a diff that
        # in-place layers rewrite is blamed on its first writer in backward order.
        for record in reversed(self.layer_records):
            if not record.need_backward:
                continue
            where = f"backward pass at layer {record.name!r} ({record.layer.type})"
            for bottom, need in zip(record.bottoms, record.bottom_need_backward):
                if need and not _all_finite(bottom.blob.cpu_diff()):
                    return (f"every top is finite; the first non-finite value appeared in the {where}, "
                            f"bottom blob {bottom.name!r} diff")
            for param_id, blob in enumerate(record.layer.blobs):
                if record.layer.param_propagate(param_id) and not _all_finite(blob.cpu_diff()):
                    return (f"every top is finite; the first non-finite value appeared in the {where}, "
                            f"param blob {param_id} diff")
        return None

    def _first_non_finite_top(self) -> tuple[LayerRecord, BlobRecord] | None:
        """The first layer, in forward order, whose top became non-finite, and that top.

        In-place layers (`ip1 -> relu1 -> ip1`) leave only the last writer's values in a
        blob, so a non-finite blob with several writers is re-run from its first writer's
        bottoms, checking after each writer. Those bottoms still hold what the first writer
        read: a blob that another layer also reads gets a Split, so nothing rewrites it in
        place. A chain that starts at a layer without bottoms (Data, Input) is not re-run,
        as a data layer would read the next batch: that layer is named. As the culprit of
        a chain may come after other layers, the scan goes on up to it.
        """
        writers: dict[BlobRecord, list[int]] = {}  # blob -> the ids of the layers writing it
        for layer_id, record in enumerate(self.layer_records):
            for top in record.tops:
                writers.setdefault(top, []).append(layer_id)
        found = None  # (layer id, top)
        for layer_id, record in enumerate(self.layer_records):
            if found is not None and found[0] < layer_id:
                break
            for top in record.tops:
                chain = writers[top]
                if chain[0] != layer_id or _all_finite(top.blob.cpu_data()):
                    continue  # later writers of a blob are judged with its first one
                culprit = self._first_non_finite_writer(top, chain)
                if found is None or culprit < found[0]:
                    found = (culprit, top)
        return None if found is None else (self.layer_records[found[0]], found[1])

    def _first_non_finite_writer(self, top: BlobRecord, chain: list[int]) -> int:
        """The layer of `chain` (the ids of the layers writing `top`, in order) that made it non-finite."""
        if len(chain) == 1 or not self.layer_records[chain[0]].bottoms:
            return chain[0]
        for layer_id in chain:
            record = self.layer_records[layer_id]
            record.layer.forward(record.bottom_vec, record.top_vec)
            if not _all_finite(top.blob.cpu_data()):
                return layer_id
        return chain[0]  # a random layer (Dropout) came out finite this time

    # ---- pycaffe's conveniences
    @property
    def inputs(self) -> list[str]:
        return [top.name for r in self.layer_records if r.layer.type == "Input" for top in r.tops]

    @property
    def outputs(self) -> list[str]:
        return [b.name for b in self._output_records]

    @property
    def output_blobs(self) -> list[Blob]:
        return [b.blob for b in self._output_records]

    @property
    def output_blob_names(self) -> list[str]:
        return self.outputs

    @property
    def output_blob_loss_weights(self) -> list[float]:
        return [b.loss_weight for b in self._output_records]

    @property
    def _inputs(self) -> list[int]:
        """Indices into `blobs` of the inputs (pycaffe's net._inputs)."""
        return [self.blob_names.index(name) for name in self.inputs]

    @property
    def _outputs(self) -> list[int]:
        return [self.blob_records.index(b) for b in self._output_records]

    @property
    def _blob_loss_weights(self) -> list[float]:
        """Each blob's weight in the loss, in `blobs` order (0 for a blob that is no loss)."""
        return [b.loss_weight for b in self.blob_records]

    @property
    def blob_loss_weights(self) -> OrderedDict:
        return OrderedDict((b.name, b.loss_weight) for b in self.blob_records)

    @property
    def top_names(self) -> OrderedDict:
        return OrderedDict((r.name, [t.name for t in r.tops]) for r in self.layer_records)

    @property
    def bottom_names(self) -> OrderedDict:
        return OrderedDict((r.name, [b.name for b in r.bottoms]) for r in self.layer_records)

    def data_layers(self) -> list:
        return [layer for layer in self.layers if hasattr(layer, "set_batch_index")]

    def set_input_arrays(self, data, labels) -> None:
        """pycaffe's set_input_arrays: hand (N, C, H, W) float32 `data` and N `labels` to
        the net's first layer, which must be MemoryData (see its `reset`)."""
        if not self.layers or self.layers[0].type != "MemoryData":
            raise MinicaffeError(f"set_input_arrays may only be called if the first layer of net "
                                 f"{self.name!r} is a MemoryData layer")
        self.layers[0].reset(data, labels)

    def forward(self, blobs=None, start=None, end=None, **inputs) -> dict[str, np.ndarray]:
        """pycaffe's forward: set input blobs from keyword arrays, run, return blobs by name.

        `start` and `end` name the first and last layer to run (both included). The
        result holds the net's outputs, or the tops of `end` when it is given, plus the
        blobs named in `blobs`. An input array with another batch size reshapes the net.
        """
        for name, array in inputs.items():
            if name not in self.inputs:
                raise MinicaffeError(f"{name!r} is not an input of net {self.name!r} (inputs: {self.inputs})")
            blob = self.blobs[name]
            array = np.asarray(array, dtype=np.float32)
            if array.shape != blob.shape:
                if array.shape[1:] != blob.shape[1:]:
                    raise MinicaffeError(f"input {name!r} has shape {array.shape}, the net expects {blob.shape}")
                blob.reshape(array.shape)
                self.reshape()
            blob.mutable_cpu_data()[...] = array
        start_i = self._layer_index(start, 0)
        end_i = self._layer_index(end, len(self.layers) - 1)
        self.forward_from_to(start_i, end_i)
        names = self.outputs if end is None else self.top_names[end]
        return {name: self.blobs[name].data for name in self._known_blobs(names, blobs)}

    def backward(self, diffs=None, start=None, end=None, **output_diffs) -> dict[str, np.ndarray]:
        """pycaffe's backward: set output diffs from keyword arrays, run, return diffs by name.

        `start` and `end` name the first and last layer to run, walking down (both
        included). The result holds the inputs' diffs, or the diffs of `end`'s bottoms
        when it is given, plus the blobs named in `diffs`.
        """
        for name, array in output_diffs.items():
            if name not in self.outputs:
                raise MinicaffeError(f"{name!r} is not an output of net {self.name!r} (outputs: {self.outputs})")
            self.blobs[name].mutable_cpu_diff()[...] = array
        start_i = self._layer_index(start, len(self.layers) - 1)
        end_i = self._layer_index(end, 0)
        self.backward_from_to(start_i, end_i)
        names = self.inputs if end is None else self.bottom_names[end]
        return {name: self.blobs[name].diff for name in self._known_blobs(names, diffs)}

    def _known_blobs(self, names, extra) -> list[str]:
        extra = [extra] if isinstance(extra, str) else list(extra or [])
        unknown = [name for name in extra if name not in self.blobs]
        if unknown:
            raise MinicaffeError(f"net {self.name!r} has no blob(s) {unknown}")
        return list(dict.fromkeys(list(names) + extra))

    def _batches(self, arrays: dict):
        """Split equal-length arrays into batches of the net's batch size; the last batch is
        padded with zeros. Yields (batch dict, number of real rows in it)."""
        lengths = {len(a) for a in arrays.values()}
        if len(lengths) != 1:
            raise MinicaffeError(f"the arrays given have different lengths: "
                                 f"{ {name: len(a) for name, a in arrays.items()} }")
        total = lengths.pop()
        size = self.blobs[next(iter(arrays))].shape[0]  # the net's batch, as its blob has it
        for i in range(0, total, size):
            batch = {}
            for name, array in arrays.items():
                chunk = np.asarray(array[i:i + size], dtype=np.float32)
                if len(chunk) < size:
                    chunk = np.concatenate([chunk, np.zeros((size - len(chunk),) + chunk.shape[1:], np.float32)])
                batch[name] = chunk
            yield batch, min(size, total - i)

    def forward_all(self, blobs=None, **inputs) -> dict[str, np.ndarray]:
        """pycaffe's forward_all: run any number of inputs through, a batch at a time.

        Each input is an array whose first axis may be longer than the net's batch; the
        result holds the outputs (and `blobs`) for every row, padding dropped.
        """
        if not inputs:
            return {name: array.copy() for name, array in self.forward(blobs).items()}
        parts: dict[str, list] = {}
        for batch, real in self._batches(inputs):
            for name, array in self.forward(blobs, **batch).items():
                parts.setdefault(name, []).append(array[:real].copy())
        return {name: np.concatenate(chunks) for name, chunks in parts.items()}

    def forward_backward_all(self, blobs=None, diffs=None, **arrays):
        """pycaffe's forward_backward_all: forward then backward, a batch at a time.

        Keyword arrays name inputs (for forward) and outputs (their diffs, for backward).
        Returns two dicts, the forward results and the backward results, padding dropped.
        """
        unknown = [name for name in arrays if name not in self.inputs and name not in self.outputs]
        if unknown:
            raise MinicaffeError(f"{unknown} are neither inputs {self.inputs} nor outputs "
                                 f"{self.outputs} of net {self.name!r}")
        outs: dict[str, list] = {}
        grads: dict[str, list] = {}
        batches = self._batches(arrays) if arrays else iter([({}, None)])
        for batch, real in batches:
            forward_in = {k: v for k, v in batch.items() if k in self.inputs}
            backward_in = {k: v for k, v in batch.items() if k in self.outputs}
            for name, array in self.forward(blobs, **forward_in).items():
                outs.setdefault(name, []).append(array[:real].copy())
            for name, array in self.backward(diffs, **backward_in).items():
                grads.setdefault(name, []).append(array[:real].copy())
        return ({name: np.concatenate(chunks) for name, chunks in outs.items()},
                {name: np.concatenate(chunks) for name, chunks in grads.items()})

    # ---- weights in and out
    def share_trained_layers_with(self, other: "Net") -> None:
        """Use `other`'s parameter memory for same-named layers (test nets share the train net's)."""
        for name, source in zip(other.layer_names, other.layers):
            if name not in self.layer_dict or not source.blobs:
                continue
            target = self.layer_dict[name]
            if len(target.blobs) != len(source.blobs):
                raise MinicaffeError(f"layer {name!r}: {len(source.blobs)} parameter blobs in the "
                                     f"source net, {len(target.blobs)} here")
            for j, (t, s) in enumerate(zip(target.blobs, source.blobs)):
                if t.shape != s.shape:
                    raise MinicaffeError(f"layer {name!r} param {j}: shape {s.shape} in the source "
                                         f"net, {t.shape} here")
                t.share_data(s)

    share_with = share_trained_layers_with

    def copy_trained_layers_from(self, weights) -> None:
        """Copy parameters by layer name from a .caffemodel path or a NetParameter.

        Layers missing from this net are ignored (that is how finetuning works); a layer
        whose parameter shapes differ is an error: rename it to learn it from scratch.
        A .caffemodel from an older Caffe (V0 or V1 layers) is upgraded first (see
        minicaffe.upgrade), and its legacy 4-D blob shapes are matched as Caffe does.
        Which learnable layers got weights, and which kept their fillers, is logged; a
        file that gives weights to none of them is an error, since the net would then
        compute on its random initialisation as if it had been trained.
        """
        if isinstance(weights, caffe_pb2.NetParameter):
            source, where = weights, "the given NetParameter"
        elif hdf5.is_hdf5(weights):  # a .caffemodel.h5, by its suffix as in Caffe
            hdf5.copy_trained_layers(self, weights)
            return
        else:
            where = str(weights)
            source = protoio.read_binary(weights, caffe_pb2.NetParameter())
        if net_needs_upgrade(source):
            if source is weights:  # the caller's message is left as it was
                source = caffe_pb2.NetParameter()
                source.CopyFrom(weights)
            upgrade_net_as_needed(source, where)
        copied = []
        for src in source.layer:
            if src.name not in self.layer_dict:
                log.info("Ignoring source layer %s", src.name)
                continue
            target = self.layer_dict[src.name]
            log.info("Copying source layer %s", src.name)
            if len(src.blobs) != len(target.blobs):
                raise MinicaffeError(f"{where}: layer {src.name!r} has {len(src.blobs)} parameter "
                                     f"blob(s) in the file and {len(target.blobs)} in the net")
            for j, (proto, blob) in enumerate(zip(src.blobs, target.blobs)):
                stored = Blob(name=f"{src.name}[{j}]")
                try:
                    stored.from_proto(proto)
                except MinicaffeError as err:
                    raise MinicaffeError(f"{where}: {err}") from None
                if not proto_shape_matches(proto, blob.shape):
                    raise MinicaffeError(
                        f"{where}: cannot copy param {j} weights of layer {src.name!r}; shape "
                        f"mismatch: the file has {stored.shape}, the net has {blob.shape}. To learn "
                        "this layer's parameters from scratch rather than copying them, rename the layer.")
                blob.mutable_cpu_data()[...] = stored.cpu_data().reshape(blob.shape)
            if target.blobs:
                copied.append(src.name)
        self._report_copied_layers(where, source, copied)

    def _report_copied_layers(self, where: str, source, copied: list[str]) -> None:
        learnable = [name for name, layer in self.layer_dict.items() if layer.blobs]
        missing = [name for name in learnable if name not in copied]
        if learnable and not copied:
            raise MinicaffeError(f"{where}: no layer of net {self.name!r} got weights from this file "
                                 f"(its layers are {[layer.name for layer in source.layer][:12]}); the "
                                 f"net's learnable layers are {learnable}. Layers are matched by name.")
        log.info("Weights from %s: copied for %d of %d learnable layers%s", where, len(copied),
                 len(learnable), f" ({', '.join(copied)})" if copied else "")
        if missing:
            log.warning("Layers %s got no weights from %s and keep their filler initialisation",
                        ", ".join(missing), where)

    copy_from = copy_trained_layers_from

    def to_proto(self, write_diff: bool = False) -> caffe_pb2.NetParameter:
        out = caffe_pb2.NetParameter(name=self.name)
        for layer in self.layers:
            lp = out.layer.add()
            lp.CopyFrom(layer.layer_param)
            del lp.blobs[:]
            for blob in layer.blobs:
                blob.to_proto(lp.blobs.add(), write_diff)
        return out

    def save(self, path) -> None:
        """Write the weights as a binary .caffemodel (atomically)."""
        protoio.write_binary(path, self.to_proto())

    def save_hdf5(self, path, write_diff: bool = False) -> None:
        """Write the weights (and diffs if asked) as a .caffemodel.h5 in Caffe's layout."""
        hdf5.save_net(self, path, write_diff)

    def load_hdf5(self, path) -> None:
        """Copy weights by layer name from a .caffemodel.h5 (whatever its file name)."""
        hdf5.copy_trained_layers(self, path)

    def __repr__(self) -> str:
        return f"<Net {self.name!r} phase={caffe_pb2.Phase.Name(self.phase)} layers={len(self.layers)}>"
