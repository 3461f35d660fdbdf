"""Older Caffe files: how Caffe's net format evolved, and how each old form is upgraded.

A Caffe model is one protobuf message, a NetParameter: the prototxt is its text form,
and a .caffemodel is the same message in binary with each layer's `blobs` (its weights)
filled in. Its layout changed several times between 2013 and 2017, and Caffe never
stopped reading the older files: as a file is read, `upgrade_proto.cpp` rewrites each
older form into the next. Model-zoo files of every vintage are still about, so minicaffe
applies the same rules, in Caffe's order:

1. **V0 -> V1** (files from 2013). A V0 layer is one flat message, `V0LayerParameter`,
   with every option that any layer might need (`num_output`, `kernelsize`, `source`,
   `meanfile`, ...), wrapped as `layers { layer { name type ... } bottom top }`. Its type
   is a lower-case string ("conv", "innerproduct"), and zero-padding is a layer of its own
   ("padding"). V1 gives the type an enum (CONVOLUTION) and each type its own options
   message (`convolution_param`, `data_param`, ...). The upgrade first removes each
   padding layer, handing its `pad` to the convolution or pooling that reads it, then
   moves each V0 option to the place V1 keeps it for the layer's type (`V0_OPTIONS`).
   An option that the type has no place for (a `num_output` on a ReLU) is dropped, and
   the layer and the option are named in the log; the upgrade goes on, as Caffe's does.
2. **Data transformation** (V1 files from early 2014). `scale`, `mean_file`, `crop_size`
   and `mirror` moved from each data layer's own message (`data_param`,
   `image_data_param`, `window_data_param`) into one `transform_param`, which every
   data layer shares.
3. **V1 -> V2** (2015). V1 layers are `layers` entries (field 2) with an enum type; V2
   layers are `layer` entries (field 100) whose type is a string, the layer's class name
   ("Convolution"), so that adding a layer no longer means adding to the enum. The
   per-blob learning settings, four parallel lists in V1 (`param` names,
   `blob_share_mode`, `blobs_lr`, `weight_decay`), become one
   `param { name share_mode lr_mult decay_mult }` per blob. All else is copied: name,
   bottoms, tops, include/exclude rules, loss weights, every `*_param` message, and the
   `blobs`, so that a V1 .caffemodel keeps its weights.
4. **Input fields -> Input layer** (2016). Inputs were declared at net level,
   `input: "data"` with an `input_shape { dim ... }`, or four `input_dim` values, per
   input. They become one Input layer named "input", placed first. A .caffemodel from an
   older Caffe names its inputs without shapes: those names are simply dropped.
5. **BatchNorm** (2016). BatchNorm once needed three `param { lr_mult: 0 }` specs to keep
   the solver off its statistics; the layer now sets lr_mult 0 itself and refuses
   anything else. A BatchNorm with exactly three specs gets `lr_mult: 0` and
   `decay_mult: 0` in each; their other settings (a shared name) are kept.

The solver file changed once: the enum `solver_type: NESTEROV` became the string
`type: "Nesterov"`. That upgrade lives with the solver,
`minicaffe.solver.upgrade_solver_param`.

Where minicaffe upgrades: `Net` upgrades the definition it is built from (a file or a
NetParameter); `Net.copy_trained_layers_from` upgrades a .caffemodel before it matches
the layers by name; and `minicaffe upgrade_net_proto_text`, `upgrade_net_proto_binary`
and `upgrade_solver_proto_text IN OUT` write the upgraded file once and for all. Every
step says in the log what it did ("Attempting to upgrade input file specified using
deprecated V1LayerParameter: lenet.prototxt"). What cannot be upgraded at all (an unknown
V0 type, padding in front of a layer that cannot pad, a file mixing `layer` and `layers`)
is a MinicaffeError naming the file and the layer.

One more legacy lives in the blobs of a V1 .caffemodel: a blob's shape is four numbers,
`num`, `channels`, `height`, `width`, and a blob of fewer axes is padded with 1s at the
front: a bias of 10 values is 1 x 1 x 1 x 10, an InnerProduct weight 1 x 1 x 10 x 500.
`legacy_blob_shape` and `proto_shape_matches` say which of today's blobs such a file fits.
"""
from __future__ import annotations

import logging

from minicaffe.blob import has_legacy_shape, stored_shape
from minicaffe.common import MinicaffeError
from minicaffe.proto import caffe_pb2

log = logging.getLogger(__name__)

V1 = caffe_pb2.V1LayerParameter


# ---------------------------------------------------------------- 1. V0 -> V1

# The V0 type strings, and the V1 enum each became. ("padding" has none: it is folded
# into the layer that reads it.)
V0_LAYER_TYPES = {
    "accuracy": V1.ACCURACY, "bnll": V1.BNLL, "concat": V1.CONCAT, "conv": V1.CONVOLUTION,
    "data": V1.DATA, "dropout": V1.DROPOUT, "euclidean_loss": V1.EUCLIDEAN_LOSS,
    "flatten": V1.FLATTEN, "hdf5_data": V1.HDF5_DATA, "hdf5_output": V1.HDF5_OUTPUT,
    "im2col": V1.IM2COL, "images": V1.IMAGE_DATA, "infogain_loss": V1.INFOGAIN_LOSS,
    "innerproduct": V1.INNER_PRODUCT, "lrn": V1.LRN,
    "multinomial_logistic_loss": V1.MULTINOMIAL_LOGISTIC_LOSS, "pool": V1.POOLING,
    "relu": V1.RELU, "sigmoid": V1.SIGMOID, "softmax": V1.SOFTMAX,
    "softmax_loss": V1.SOFTMAX_LOSS, "split": V1.SPLIT, "tanh": V1.TANH,
    "window_data": V1.WINDOW_DATA,
}

# Where each V0 option went in V1: {option: {V0 type: "message.field"}}. "*" is every
# type: the image transformation options went to transform_param whatever the layer.
# A V0 option missing here, or not listed for the layer's type, has no place in V1.
_CONV_OR_IP = {"conv": "convolution_param", "innerproduct": "inner_product_param"}
_CONV_OR_POOL = {"conv": "convolution_param", "pool": "pooling_param"}
_DATA_LAYERS = {"data": "data_param", "hdf5_data": "hdf5_data_param",
                "images": "image_data_param", "window_data": "window_data_param"}


def _to(messages: dict[str, str], field: str) -> dict[str, str]:
    return {v0_type: f"{message}.{field}" for v0_type, message in messages.items()}


V0_OPTIONS: dict[str, dict[str, str]] = {
    "num_output": _to(_CONV_OR_IP, "num_output"),
    "biasterm": _to(_CONV_OR_IP, "bias_term"),
    "weight_filler": _to(_CONV_OR_IP, "weight_filler"),
    "bias_filler": _to(_CONV_OR_IP, "bias_filler"),
    "pad": _to(_CONV_OR_POOL, "pad"),
    "kernelsize": _to(_CONV_OR_POOL, "kernel_size"),
    "stride": _to(_CONV_OR_POOL, "stride"),
    "group": {"conv": "convolution_param.group"},
    "pool": {"pool": "pooling_param.pool"},
    "dropout_ratio": {"dropout": "dropout_param.dropout_ratio"},
    "local_size": {"lrn": "lrn_param.local_size"},
    "alpha": {"lrn": "lrn_param.alpha"},
    "beta": {"lrn": "lrn_param.beta"},
    "k": {"lrn": "lrn_param.k"},
    "source": {**_to(_DATA_LAYERS, "source"), "infogain_loss": "infogain_loss_param.source"},
    "batchsize": _to(_DATA_LAYERS, "batch_size"),
    "rand_skip": {"data": "data_param.rand_skip", "images": "image_data_param.rand_skip"},
    "shuffle_images": {"images": "image_data_param.shuffle"},
    "new_height": {"images": "image_data_param.new_height"},
    "new_width": {"images": "image_data_param.new_width"},
    "scale": {"*": "transform_param.scale"},
    "meanfile": {"*": "transform_param.mean_file"},
    "cropsize": {"*": "transform_param.crop_size"},
    "mirror": {"*": "transform_param.mirror"},
    "concat_dim": {"concat": "concat_param.concat_dim"},
    "det_fg_threshold": {"window_data": "window_data_param.fg_threshold"},
    "det_bg_threshold": {"window_data": "window_data_param.bg_threshold"},
    "det_fg_fraction": {"window_data": "window_data_param.fg_fraction"},
    "det_context_pad": {"window_data": "window_data_param.context_pad"},
    "det_crop_mode": {"window_data": "window_data_param.crop_mode"},
    "hdf5_output_param": {"hdf5_output": "hdf5_output_param"},
}

# What every V0 layer carries over as it is, outside the per-type options.
_V0_COMMON = ("name", "type", "blobs", "blobs_lr", "weight_decay")


def net_needs_v0_to_v1_upgrade(param) -> bool:
    """Whether any `layers` entry wraps a V0 layer (`layers { layer { ... } }`)."""
    return any(connection.HasField("layer") for connection in param.layers)


def upgrade_v0_padding_layers(param) -> caffe_pb2.NetParameter:
    """A copy of the V0 net `param` without padding layers; each one's `pad` goes to the
    conv or pool layer that reads its output, which then reads the padding's input.

    Padding is only defined in front of a convolution or pooling with one bottom, from a
    padding layer with one bottom and one top; anything else is an error. Applying it
    twice changes nothing.
    """
    out = caffe_pb2.NetParameter()
    out.CopyFrom(param)
    del out.layers[:]
    # Each blob's latest writer so far; None for the net's inputs.
    writer: dict[str, caffe_pb2.V1LayerParameter | None] = {name: None for name in param.input}
    for connection in param.layers:
        layer = connection.layer
        if layer.type != "padding":
            out.layers.add().CopyFrom(connection)
        for j, blob in enumerate(connection.bottom):
            if blob not in writer:
                raise MinicaffeError(f"layer {layer.name!r}: unknown bottom blob {blob!r} (bottom "
                                     f"#{j}); no earlier layer or net input produces it")
            padding = writer[blob]
            if padding is None or padding.layer.type != "padding":
                continue
            where = f"padding layer {padding.layer.name!r} feeds layer {layer.name!r}"
            if layer.type not in ("conv", "pool"):
                raise MinicaffeError(f"{where}, of type {layer.type!r}; only a conv or pool layer "
                                     "can take over its padding")
            if len(connection.bottom) != 1:
                raise MinicaffeError(f"{where}, which has {len(connection.bottom)} bottoms; it "
                                     "may have only the padded one")
            if len(padding.bottom) != 1 or len(padding.top) != 1:
                raise MinicaffeError(f"{where}, but has {len(padding.bottom)} bottom(s) and "
                                     f"{len(padding.top)} top(s); it may have one of each")
            out.layers[-1].layer.pad = padding.layer.pad
            out.layers[-1].bottom[j] = padding.bottom[0]
        for blob in connection.top:
            writer[blob] = connection
    return out


def _put(target, path: str, option, value) -> None:
    """Set `path` ("message.field") of the V1 layer `target` to the V0 option's value."""
    *messages, name = path.split(".")
    for message in messages:
        target = getattr(target, message)
    field = target.DESCRIPTOR.fields_by_name[name]
    if field.is_repeated:  # a convolution's pad, kernel_size, stride: now one per spatial axis
        getattr(target, name).append(value)
    elif field.message_type is not None:  # the fillers, hdf5_output_param
        getattr(target, name).CopyFrom(value)
    elif field.enum_type is not None:  # pool: MAX, AVE or STOCHASTIC in both enums
        label = option.enum_type.values_by_number[value].name
        setattr(target, name, field.enum_type.values_by_name[label].number)
    else:
        setattr(target, name, value)


def upgrade_v0_layer(connection) -> tuple[caffe_pb2.V1LayerParameter, bool]:
    """The V1 form of one V0 `layers { layer { ... } bottom top }` entry, and whether
    every option found its place (those that did not are logged and dropped)."""
    v0 = connection.layer
    out = V1(bottom=connection.bottom, top=connection.top)
    if v0.HasField("name"):
        out.name = v0.name
    if v0.HasField("type"):
        if v0.type not in V0_LAYER_TYPES:
            raise MinicaffeError(f"layer {v0.name!r}: unknown V0 layer type {v0.type!r} (the V0 "
                                 f"types are {', '.join(sorted(V0_LAYER_TYPES))} and padding)")
        out.type = V0_LAYER_TYPES[v0.type]
    out.blobs.extend(v0.blobs)
    out.blobs_lr.extend(v0.blobs_lr)
    out.weight_decay.extend(v0.weight_decay)
    complete = True
    for option, value in v0.ListFields():
        if option.name in _V0_COMMON:
            continue
        places = V0_OPTIONS.get(option.name, {})
        path = places.get(v0.type, places.get("*"))
        if path is None:
            log.error("Layer %r (V0 type %r): its option %s has no place in that type of layer "
                      "in V1; dropped", v0.name, v0.type, option.name)
            complete = False
            continue
        _put(out, path, option, value)
    return out, complete


def upgrade_v0_net(param) -> bool:
    """Upgrade the V0 net `param` to V1 in place: fold the padding layers, then rewrite
    every layer. Net-level fields are kept. False if some option was dropped."""
    for i, connection in enumerate(param.layers):
        if not connection.HasField("layer"):
            raise MinicaffeError(f"layers entry #{i} ({connection.name or 'no name'}) is in the V1 "
                                 "format while others wrap a V0 `layer`; a file is one or the other")
    complete = True
    upgraded = []
    for connection in upgrade_v0_padding_layers(param).layers:
        layer, ok = upgrade_v0_layer(connection)
        upgraded.append(layer)
        complete &= ok
    del param.layers[:]
    param.layers.extend(upgraded)
    return complete


# ---------------------------------------------------------------- 2. data transformation

# In V1, the data layers whose own message held the transformation options.
_V1_DATA_MESSAGES = {V1.DATA: "data_param", V1.IMAGE_DATA: "image_data_param",
                     V1.WINDOW_DATA: "window_data_param"}
TRANSFORM_OPTIONS = ("scale", "mean_file", "crop_size", "mirror")


def net_needs_data_upgrade(param) -> bool:
    """Whether a V1 data layer still sets scale / mean_file / crop_size / mirror itself."""
    for layer in param.layers:
        own = _V1_DATA_MESSAGES.get(layer.type)
        if own and any(getattr(layer, own).HasField(option) for option in TRANSFORM_OPTIONS):
            return True
    return False


def upgrade_net_data_transformation(param) -> None:
    """Move those options into the layer's transform_param (in place); they win over a
    value transform_param already had, as in Caffe."""
    for layer in param.layers:
        own = _V1_DATA_MESSAGES.get(layer.type)
        if own is None:
            continue
        message = getattr(layer, own)
        for option in TRANSFORM_OPTIONS:
            if message.HasField(option):
                setattr(layer.transform_param, option, getattr(message, option))
                message.ClearField(option)


# ---------------------------------------------------------------- 3. V1 -> V2

# The V1 enum names and the V2 type strings (the C++ class names, not a mechanical
# CamelCase: ABSVAL is AbsVal, SOFTMAX_LOSS is SoftmaxWithLoss, IM2COL is Im2col).
V1_LAYER_TYPES = {
    "NONE": "", "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution", "DATA": "Data", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice",
    "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}


def v1_layer_type(enum_value: int) -> str:
    """The V2 type string of a V1 LayerType value ("" for NONE)."""
    return V1_LAYER_TYPES[V1.LayerType.Name(enum_value)]


def net_needs_v1_to_v2_upgrade(param) -> bool:
    """Whether the net has V1 `layers` entries."""
    return len(param.layers) > 0


def upgrade_v1_layer(v1, layer) -> bool:
    """Fill the LayerParameter `layer` from the V1LayerParameter `v1`. False if `v1` still
    wraps a V0 layer, which is ignored (upgrade_v0_net would have rewritten it)."""
    layer.Clear()
    if v1.HasField("name"):
        layer.name = v1.name
    if v1.HasField("type"):
        layer.type = v1_layer_type(v1.type)
    layer.bottom.extend(v1.bottom)
    layer.top.extend(v1.top)
    layer.include.extend(v1.include)
    layer.exclude.extend(v1.exclude)
    layer.loss_weight.extend(v1.loss_weight)
    layer.blobs.extend(v1.blobs)

    # The four per-blob lists become one ParamSpec per blob; a shorter list leaves the
    # later specs at their defaults (lr_mult 1, decay_mult 1, no name).
    def spec(i: int):
        while len(layer.param) <= i:
            layer.param.add()
        return layer.param[i]
    for i, name in enumerate(v1.param):
        spec(i).name = name
    for i, mode in enumerate(v1.blob_share_mode):
        spec(i).share_mode = caffe_pb2.ParamSpec.DimCheckMode.Value(V1.DimCheckMode.Name(mode))
    for i, lr in enumerate(v1.blobs_lr):
        spec(i).lr_mult = lr
    for i, decay in enumerate(v1.weight_decay):
        spec(i).decay_mult = decay

    # Every V1 options message has a namesake in LayerParameter.
    for field, value in v1.ListFields():
        if field.name.endswith("_param"):
            getattr(layer, field.name).CopyFrom(value)
    if v1.HasField("layer"):
        log.error("Layer %r still wraps a V0 layer, which is ignored", v1.name)
        return False
    return True


def upgrade_v1_net(param) -> bool:
    """Replace the V1 `layers` of `param` by V2 `layer` entries, in place."""
    if param.layer:
        raise MinicaffeError(
            f"it mixes {len(param.layer)} `layer` entries (today's format, type: \"Name\") with "
            f"{len(param.layers)} `layers` entries (the V1 format, type: ENUM); rewrite the "
            "`layers` ones as `layer` to go on")
    complete = True
    for i, v1 in enumerate(param.layers):
        if not upgrade_v1_layer(v1, param.layer.add()):
            log.error("Upgrade of layer #%d (%r) was incomplete", i, v1.name)
            complete = False
    del param.layers[:]
    return complete


# ---------------------------------------------------------------- 4. input fields

def net_needs_input_upgrade(param) -> bool:
    """Whether the net declares net-level `input` fields."""
    return len(param.input) > 0


def upgrade_net_input(param) -> None:
    """Turn the net-level `input` / `input_shape` / `input_dim` fields of `param` into an
    Input layer named "input", placed first (in place). Inputs without any shape, as a
    .caffemodel from an older Caffe has them, are dropped."""
    names = list(param.input)
    if param.input_shape or param.input_dim:
        layer = caffe_pb2.LayerParameter(name="input", type="Input", top=names)
        if param.input_shape:  # input_shape wins over input_dim when both are given
            if len(param.input_shape) != len(names):
                raise MinicaffeError(f"net {param.name!r}: {len(names)} input(s) {names} but "
                                     f"{len(param.input_shape)} input_shape(s); give one per input")
            layer.input_param.shape.extend(param.input_shape)
        else:
            if len(param.input_dim) != 4 * len(names):
                raise MinicaffeError(f"net {param.name!r}: input_dim needs 4 values per input "
                                     f"({len(names)} input(s)), got {len(param.input_dim)}")
            for i in range(len(names)):
                layer.input_param.shape.add(dim=param.input_dim[4 * i: 4 * i + 4])
        rest = caffe_pb2.NetParameter(layer=param.layer)
        del param.layer[:]
        param.layer.add().CopyFrom(layer)
        param.layer.extend(rest.layer)
    else:
        log.info("Net %r names inputs %s without shapes (as .caffemodel files from older Caffes "
                 "do); the names are dropped", param.name, names)
    del param.input[:], param.input_shape[:], param.input_dim[:]


# ---------------------------------------------------------------- 5. BatchNorm

def net_needs_batch_norm_upgrade(param) -> bool:
    """Whether a BatchNorm layer has the three param specs the old definition asked for,
    not all of them already at lr_mult 0 and decay_mult 0 (Caffe asks only the former, and
    would say it upgrades a net it already upgraded; the result is the same)."""
    return any(layer.type == "BatchNorm" and len(layer.param) == 3
               and any(spec.lr_mult != 0 or spec.decay_mult != 0 for spec in layer.param)
               for layer in param.layer)


def upgrade_net_batch_norm(param) -> None:
    """Give those specs lr_mult 0 and decay_mult 0, keeping the rest of each (in place)."""
    for layer in param.layer:
        if layer.type == "BatchNorm" and len(layer.param) == 3:
            for spec in layer.param:
                spec.lr_mult = 0
                spec.decay_mult = 0


# ---------------------------------------------------------------- all of them, as needed

def net_needs_upgrade(param) -> bool:
    """Whether any of the five upgrades applies to `param`."""
    return (net_needs_v0_to_v1_upgrade(param) or net_needs_v1_to_v2_upgrade(param)
            or net_needs_data_upgrade(param) or net_needs_input_upgrade(param)
            or net_needs_batch_norm_upgrade(param))


_REWRITE_HINT = ("Write the upgraded file once with `minicaffe upgrade_net_proto_text IN OUT` "
                 "(a prototxt) or `minicaffe upgrade_net_proto_binary IN OUT` (a .caffemodel).")


def upgrade_net_as_needed(param, source: str = "the NetParameter") -> bool:
    """Bring the NetParameter `param` to today's format, in place, applying each upgrade
    that it needs in Caffe's order. `source` (a file name) is what the log and errors name.

    Returns False when an upgrade was incomplete (a V0 option with no place in V1 was
    dropped: see the log); the net is then upgraded as far as it can be, as in Caffe. An
    upgrade that cannot be done at all is a MinicaffeError naming `source` and the layer.
    """
    try:
        return _upgrade_net(param, source)
    except MinicaffeError as err:
        raise MinicaffeError(f"{source}: cannot upgrade it from Caffe's older format: {err}") from None


def _attempting(what: str, source: str) -> None:
    log.info("Attempting to upgrade input file specified using deprecated %s: %s", what, source)


def _upgrade_net(param, source: str) -> bool:
    complete = True
    if net_needs_v0_to_v1_upgrade(param):
        _attempting("V0LayerParameter", source)
        if upgrade_v0_net(param):
            log.info("Successfully upgraded file specified using deprecated V0LayerParameter")
        else:
            complete = False
            log.error("Had one or more problems upgrading V0LayerParameter (see above); continuing anyway")
        log.warning("%s is in Caffe's V0 format. %s", source, _REWRITE_HINT)
    if net_needs_data_upgrade(param):
        _attempting("transformation parameters", source)
        upgrade_net_data_transformation(param)
        log.info("Successfully upgraded file specified using deprecated data transformation parameters")
        log.warning("%s sets scale, mean_file, crop_size or mirror in a data layer's own message; "
                    "they belong in transform_param. %s", source, _REWRITE_HINT)
    if net_needs_v1_to_v2_upgrade(param):
        _attempting("V1LayerParameter", source)
        if upgrade_v1_net(param):
            log.info("Successfully upgraded file specified using deprecated V1LayerParameter")
        else:
            complete = False
            log.error("Had one or more problems upgrading V1LayerParameter (see above); continuing anyway")
    if net_needs_input_upgrade(param):
        _attempting("input fields", source)
        shaped = bool(param.input_shape or param.input_dim)  # else the names of a .caffemodel's inputs
        upgrade_net_input(param)
        log.info("Successfully upgraded file specified using deprecated input fields")
        if shaped:
            log.warning("%s declares its inputs with net-level input fields; an Input layer is "
                        "today's way. %s", source, _REWRITE_HINT)
    if net_needs_batch_norm_upgrade(param):
        log.info("Attempting to upgrade batch norm layers using deprecated params: %s", source)
        upgrade_net_batch_norm(param)
        log.info("Successfully upgraded batch norm layers using deprecated params")
    return complete


# ---------------------------------------------------------------- legacy blob shapes

def legacy_blob_shape(shape) -> tuple[int, ...] | None:
    """The (num, channels, height, width) that a V1 file gives a blob of `shape`: its
    axes padded with 1s at the front to four. None past four axes, which it cannot hold."""
    shape = tuple(int(d) for d in shape)
    if len(shape) > 4:
        return None
    return (1,) * (4 - len(shape)) + shape


def proto_shape_matches(proto, shape) -> bool:
    """Whether the BlobProto `proto` holds a blob of `shape` (Caffe's Blob::ShapeEquals).

    Today's `shape` field must equal it; the legacy num/channels/height/width fields must
    equal `legacy_blob_shape(shape)`, so a V1 bias of 1 x 1 x 1 x 10 fits a blob of (10,).
    """
    if has_legacy_shape(proto):
        return legacy_blob_shape(shape) == stored_shape(proto)
    return tuple(proto.shape.dim) == tuple(shape)
