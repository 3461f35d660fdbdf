"""NetSpec: writing a net as Python expressions instead of a prototxt (pycaffe's `caffe.net_spec`).

A prototxt lists layers and wires them together by blob name. Here the same net is a set of
function calls: each call describes one layer and returns the blob(s) it produces, so the
wiring is simply which value is passed to which call.

    from minicaffe.net_spec import NetSpec, layers as L, params as P

    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 28, 28]))
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20)
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.relu1 = L.ReLU(n.pool1, in_place=True)
    print(n.to_proto())          # a NetParameter: four `layer { ... }` entries

Three small objects carry the description:

- `Function`: one layer still to be written: its type (`"Convolution"`), its inputs and the
  keyword arguments it was given.
- `Top`: one output blob of a Function: the Function and which of its outputs it is (`n`).
  Inputs are Tops, so the Functions and Tops form the net's graph.
- `NetSpec`: a namespace whose attribute names become blob and layer names (`n.conv1 = ...`).

`layers` makes Functions: any attribute is a layer type, and calling it builds a Function and
hands back its single Top, a tuple of Tops (`ntop=2`), or the Function itself when the layer
has no outputs (`ntop=0`, e.g. Silence). `params` gives caffe.proto's enum constants
(`P.Pooling.MAX` is `PoolingParameter.MAX`).

## From the graph to a NetParameter

`to_proto` walks backwards from the tops it is asked for. A layer is written after the layers
that produce its inputs (depth first, inputs in argument order), so every bottom is produced
before it is read, the order is the same on every call, and layers that no requested top
depends on are not written at all.

Names. A blob given a name through a NetSpec keeps it; a layer takes the name of its first
top. Everything else is named after its type plus a counter that runs per type in walk order:
the first unnamed Convolution top is `Convolution1`, the next `Convolution2`. A layer with no
tops takes its own number from the same counter, and an in-place layer (`in_place=True`),
which writes back into its bottom, takes the number its top would have had. The counters
start afresh on every `to_proto` call, so a graph always gets the same names; these are the
names pycaffe gives, so a generated prototxt matches pycaffe's line for line.

Keyword arguments. Each keyword is a field. It goes into the layer's own parameter message
when that message has the field (`kernel_size=5` on a Convolution becomes
`convolution_param { kernel_size: 5 }`), and otherwise into LayerParameter itself
(`loss_weight`, `include`, `param`, ...). A few types read a message named after another
type, and their keywords go there too (a Deconvolution's into `convolution_param`, a loss's
`normalization` into `loss_param`). A keyword ending in `param` always names a
LayerParameter field (`convolution_param=dict(...)`, `param=[dict(lr_mult=1)]`). Values map
onto fields by their Python type: a dict fills a message, a list fills a repeated field (a
single value given to a repeated field is a one-element list), anything else is assigned.
"""
from __future__ import annotations

from collections import Counter, OrderedDict

from google.protobuf.message import Message

from minicaffe.common import MinicaffeError, did_you_mean
from minicaffe.proto import caffe_pb2

__all__ = ["Function", "NetSpec", "Top", "layers", "params", "param_name_dict", "to_proto",
           "assign_proto", "NetSpecError", "UnknownNameError", "BadValueError"]


# pycaffe raised AttributeError or TypeError/ValueError (straight from protobuf) where these are
# raised; each keeps that class as a base so code written against pycaffe still catches it,
# and is a MinicaffeError so the CLI and scripts see a one-paragraph message naming the layer.
class NetSpecError(MinicaffeError):
    """A net description that cannot be written as a NetParameter."""


class UnknownNameError(NetSpecError, AttributeError):
    """A keyword argument that no message has a field for, or a `params` constant that
    caffe.proto does not define."""


class BadValueError(NetSpecError, TypeError, ValueError):
    """A value that does not fit its field (a string for a number, a list for a single
    field, ...), or an input that is not a Top."""


# ---------------------------------------------------------------- which message a keyword goes to
def param_name_dict() -> dict[str, str]:
    """Layer type -> the prefix of its parameter field in LayerParameter.

    Read off caffe.proto itself: LayerParameter's field `<prefix>_param` holds a message
    `<Type>Parameter`, e.g. `inner_product_param` an `InnerProductParameter`, so
    `"InnerProduct" -> "inner_product"`. Not every such message belongs to a layer type
    (`transform_param` gives `"Transformation" -> "transform"`), which does no harm.
    """
    table = {}
    for field in caffe_pb2.LayerParameter.DESCRIPTOR.fields:
        if field.name.endswith("_param") and field.message_type is not None:
            type_name = field.message_type.name.removesuffix("Parameter")
            table[type_name] = field.name.removesuffix("_param")
    return table


_param_names = param_name_dict()

# Layer types that Caffe configures through a message named after another type, so the table
# above (pycaffe's own) has no entry for them: Deconvolution reads convolution_param, LSTM and
# RNN read recurrent_param, SoftmaxWithLoss reads softmax_param, and every loss reads
# loss_param. pycaffe sent such keywords to LayerParameter and failed; sending them where
# Caffe reads them only turns those failures into nets.
_MORE_PARAMS = {
    "Deconvolution": ("convolution_param",),
    "Im2col": ("convolution_param",),
    "LSTM": ("recurrent_param",),
    "RNN": ("recurrent_param",),
    "SoftmaxWithLoss": ("softmax_param",),
}


def _param_fields(type_name: str) -> tuple[str, ...]:
    """The LayerParameter message fields a keyword of a `type_name` layer may go into, in the
    order they are tried (LayerParameter itself comes after all of them)."""
    fields = []
    if type_name in _param_names:
        fields.append(_param_names[type_name] + "_param")
    fields += _MORE_PARAMS.get(type_name, ())
    if type_name.endswith("Loss"):
        fields.append("loss_param")
    return tuple(fields)


# ---------------------------------------------------------------- Python values -> protobuf fields
def assign_proto(message: Message, name: str, value, path: str = "") -> None:
    """Set field `name` of `message` from a plain Python value.

    A dict fills a message field key by key (recursively), a list or tuple fills a repeated
    field item by item (dicts becoming messages), and a lone value given to a repeated field
    counts as a one-element list: `kernel_size=3` is `kernel_size: [3]`. A protobuf message
    is copied in as is. `path` is where `message` sits, for error messages.
    """
    where = f"{path}{name}"
    field = message.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
        raise UnknownNameError(f"{where}: {message.DESCRIPTOR.name} has no field {name!r}."
                               f"{did_you_mean(name, message.DESCRIPTOR.fields_by_name)}")
    target = getattr(message, name)
    if field.is_repeated:
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if field.message_type is None:
            _set(where, lambda: target.extend(items))
        else:
            for i, item in enumerate(items):
                _fill(target.add(), item, f"{where}[{i}]", field.message_type.name)
    elif field.message_type is not None:
        _fill(target, value, where, field.message_type.name)
    elif isinstance(value, (list, tuple, dict)):
        raise BadValueError(f"{where}: holds a single value, got a {type(value).__name__} ({value!r})")
    else:
        _set(where, lambda: setattr(message, name, value))


def _fill(message: Message, value, where: str, type_name: str) -> None:
    """Fill a message field from a dict (or a copy of a message of the same type)."""
    if isinstance(value, Message):
        _set(where, lambda: message.CopyFrom(value))
    elif isinstance(value, dict):
        for key, item in value.items():
            assign_proto(message, key, item, f"{where}.")
    else:
        raise BadValueError(f"{where}: holds a {type_name} message, so give it as a dict, "
                            f"got {type(value).__name__} ({value!r})")


def _set(where: str, assign) -> None:
    """Run one protobuf assignment, restating its type or range error with the field's path."""
    try:
        assign()
    except (TypeError, ValueError) as error:
        raise BadValueError(f"{where}: {error}") from None


# ---------------------------------------------------------------- the graph
class Top:
    """One output blob: output number `n` of the layer `fn` describes."""

    def __init__(self, fn: Function, n: int):
        self.fn = fn
        self.n = n

    def to_proto(self) -> caffe_pb2.NetParameter:
        """The NetParameter of every layer this blob depends on, itself included."""
        return to_proto(self)

    def __repr__(self) -> str:
        return f"<Top {self.n} of a {self.fn.type_name} layer>"


class Function:
    """One layer to be written: its type, its input Tops and its keyword arguments.

    Two keywords are about the description rather than the layer: `ntop`, how many outputs it
    has (default 1), and `in_place`, whether it writes them into its bottoms (default False).
    The rest stay in `params`, as given, until `to_proto` writes them into the LayerParameter.
    """

    def __init__(self, type_name: str, inputs, params: dict):
        for index, top in enumerate(inputs):
            if not isinstance(top, Top):
                # pycaffe's exact words: scripts and tests match on them.
                raise BadValueError(f"{type_name} input {index} is not a Top (type is {type(top)})")
        params = dict(params)
        self.type_name = type_name
        self.inputs = tuple(inputs)
        self.ntop = params.pop("ntop", 1)
        self.in_place = params.pop("in_place", False)
        if not isinstance(self.ntop, int) or self.ntop < 0:
            raise BadValueError(f"{type_name}: ntop must be a count of outputs (0, 1, 2, ...), "
                                f"got {self.ntop!r}")
        self.params = params
        self.tops = tuple(Top(self, n) for n in range(self.ntop))

    def __repr__(self) -> str:
        return f"<Function {self.type_name} with {len(self.inputs)} inputs, {self.ntop} tops>"

    def _name(self, names: dict, counters: Counter) -> str:
        """The layer's name: given in a NetSpec, else its first top's, else its own number."""
        if self not in names:
            if self.tops:
                names[self] = _top_name(self.tops[0], names, counters)
            else:
                counters[self.type_name] += 1
                names[self] = f"{self.type_name}{counters[self.type_name]}"
        return names[self]

    def _to_layer(self, written: dict, names: dict, counters: Counter) -> caffe_pb2.LayerParameter:
        """This layer's LayerParameter; the layers of its inputs are already in `written`."""
        layer = caffe_pb2.LayerParameter(type=self.type_name)
        layer.bottom.extend(written[top.fn].top[top.n] for top in self.inputs)
        if self.in_place:
            layer.top.extend(layer.bottom)
        else:
            layer.top.extend(_top_name(top, names, counters) for top in self.tops)
        layer.name = self._name(names, counters)
        for key, value in self.params.items():
            try:
                message, path = self._destination(layer, key)
                assign_proto(message, key, value, path)
            except NetSpecError as error:
                raise type(error)(f"{self.type_name} layer {layer.name!r}: {error}") from None
        return layer

    def _destination(self, layer: caffe_pb2.LayerParameter, key: str) -> tuple[Message, str]:
        """The message that keyword `key` is a field of, and its path for error messages: the
        layer's own parameter message(s) first, then LayerParameter. A key ending in `param`
        is always LayerParameter's."""
        if key.endswith("param"):
            return layer, ""
        tried = []
        for field in _param_fields(self.type_name):
            message = getattr(layer, field)
            if key in message.DESCRIPTOR.fields_by_name:
                return message, f"{field}."
            tried.append(field)
        if key in layer.DESCRIPTOR.fields_by_name:
            return layer, ""
        known = [name for field in tried for name in getattr(layer, field).DESCRIPTOR.fields_by_name]
        known += list(layer.DESCRIPTOR.fields_by_name)
        if tried:
            places = " nor of ".join(tried + ["LayerParameter"])
            raise UnknownNameError(f"{key!r} is neither a field of {places}.{did_you_mean(key, known)}")
        raise UnknownNameError(
            f"{key!r} is not a LayerParameter field, and {self.type_name} has no parameter message "
            f"of its own to hold it.{did_you_mean(key, known) or _type_hint(self.type_name)}")


def _type_hint(type_name: str) -> str:
    """A suggestion for a layer type that has no parameter message: maybe it is misspelt."""
    from minicaffe.layer import layer_registry  # the registry is only needed for this message
    known = set(layer_registry()) | set(_param_names)
    if type_name in known:
        return ""
    return f" Is the type misspelt?{did_you_mean(type_name, known)}"


def _top_name(top: Top, names: dict, counters: Counter) -> str:
    """The blob name of `top`: given in a NetSpec, else its layer's type plus a counter."""
    if top not in names:
        counters[top.fn.type_name] += 1
        names[top] = f"{top.fn.type_name}{counters[top.fn.type_name]}"
    return names[top]


def _write(fn: Function, written: OrderedDict, names: dict, counters: Counter) -> None:
    """Write `fn`'s layer into `written` (Function -> LayerParameter), after the layers of its
    inputs, which are written first, depth first in argument order.

    An explicit stack rather than recursion, so that a net thousands of layers deep does not
    run into Python's recursion limit. Each stack entry is a Function and the iterator over
    its inputs still to visit.
    """
    if fn in written:
        return
    stack = [(fn, iter(fn.inputs))]
    while stack:
        current, pending = stack[-1]
        for top in pending:
            if top.fn not in written:
                stack.append((top.fn, iter(top.fn.inputs)))
                break
        else:  # every input is written: this layer can be
            stack.pop()
            written[current] = current._to_layer(written, names, counters)


def _to_net(roots, names: dict) -> caffe_pb2.NetParameter:
    """The NetParameter of every layer the `roots` (Tops or Functions) depend on."""
    written: OrderedDict = OrderedDict()
    counters: Counter = Counter()
    for root in roots:
        if isinstance(root, Top):
            root = root.fn
        elif not isinstance(root, Function):
            raise BadValueError(f"to_proto takes Tops (or zero-top Functions), got {type(root)}")
        _write(root, written, names, counters)
    net = caffe_pb2.NetParameter()
    net.layer.extend(written.values())
    return net


def to_proto(*tops) -> caffe_pb2.NetParameter:
    """The NetParameter of every layer needed to compute `tops`, all names generated."""
    return _to_net(tops, {})


class NetSpec:
    """A namespace of named Tops: `n.conv1 = L.Convolution(...)` names that blob (and its
    layer) "conv1". `to_proto` writes the layers behind every assigned Top, in assignment
    order. `n["conv1"]` is `n.conv1`, for names that are not identifiers.
    """

    def __init__(self):
        object.__setattr__(self, "tops", OrderedDict())

    def __setattr__(self, name: str, value) -> None:
        if not isinstance(value, (Top, Function)):
            # The usual slip is assigning a layer's tuple of tops to one name.
            raise BadValueError(f"NetSpec.{name}: expected a Top (or the Function of a zero-top "
                                f"layer), got {type(value)}; unpack several tops into as many names")
        self.tops[name] = value

    def __getattr__(self, name: str):
        try:
            return self.tops[name]
        except KeyError:
            raise AttributeError(f"this NetSpec has no top {name!r}; it has "
                                 f"{', '.join(self.tops) or 'none yet'}") from None

    def __setitem__(self, name: str, value) -> None:
        self.__setattr__(name, value)

    def __getitem__(self, name: str):
        return self.tops[name]

    def to_proto(self) -> caffe_pb2.NetParameter:
        """The NetParameter of the assigned tops and everything they depend on."""
        # Several names for one top: the last assignment wins, as in pycaffe.
        names = {value: name for name, value in self.tops.items()}
        return _to_net(self.tops.values(), names)


# ---------------------------------------------------------------- the two pseudo-modules
class Layers:
    """`layers.<Type>(*inputs, **kwargs)` describes a `<Type>` layer and returns its Top, its
    tuple of Tops (`ntop` > 1), or its Function (`ntop=0`). Any name is accepted as a type
    (a misspelt one is caught when the net is built, or by a keyword that fits nowhere)."""

    def __getattr__(self, type_name: str):
        if type_name.startswith("__"):  # Python's own probes (copy, pickle, inspect)
            raise AttributeError(type_name)

        def describe(*inputs, **kwargs):
            fn = Function(type_name, inputs, kwargs)
            if fn.ntop == 0:
                return fn
            return fn.tops[0] if fn.ntop == 1 else fn.tops

        describe.__name__ = describe.__qualname__ = type_name
        describe.__doc__ = f"Describe a {type_name} layer reading `inputs` (Tops); see Layers."
        return describe


class _Constants:
    """The constants of one `<Type>Parameter` message: `params.Pooling.MAX`."""

    def __init__(self, type_name: str, message):
        self._type_name = type_name
        self._message = message

    def __getattr__(self, constant: str):
        try:
            return getattr(self._message, constant)
        except AttributeError:
            values = [v.name for enum in self._message.DESCRIPTOR.enum_types for v in enum.values]
            raise UnknownNameError(
                f"params.{self._type_name}.{constant}: {self._type_name}Parameter defines no "
                f"{constant!r}; its constants are {', '.join(values) or '(none)'}."
                f"{did_you_mean(constant, values)}") from None


class Parameters:
    """`params.<Type>.<NAME>` is the enum value NAME of caffe.proto's `<Type>Parameter`:
    `params.Pooling.MAX == caffe_pb2.PoolingParameter.MAX`."""

    def __getattr__(self, type_name: str):
        if type_name.startswith("__"):
            raise AttributeError(type_name)
        message = getattr(caffe_pb2, type_name + "Parameter", None)
        if message is None:
            known = [name.removesuffix("Parameter") for name in caffe_pb2.DESCRIPTOR.message_types_by_name
                     if name.endswith("Parameter")]
            raise UnknownNameError(f"params.{type_name}: caffe.proto has no {type_name}Parameter "
                                   f"message.{did_you_mean(type_name, known)}")
        return _Constants(type_name, message)


layers = Layers()
params = Parameters()
