"""One docs page per registered layer type, written from the code itself.

For each type in `minicaffe.layer.layer_registry()` the page shows, all read from the
repository at build time (nothing is copied by hand):

* the module and class docstrings (what it computes, forward/backward maths, shapes);
* its family (Data, Vision, ... as in Caffe's layer catalogue), linking to its section
  of the index, which groups the types by family;
* the blob-count rules (class attributes) and the prototxt parameters: every field of
  each `*_param` message the code run for the layer reads (`param_fields`), with type and
  default from the protobuf descriptor and the comment from `minicaffe/proto/caffe.proto`;
* the numpy module and its OpenCL twin `opencl/<stem>.cl`, side by side, with the
  modules of the layer's base classes (e.g. `base_conv.py` under Convolution) whose
  helpers it calls;
* the gradient-check tests from `tests/layers/test_<stem>.py`.

`docs/hooks.py` adds the pages to the site; `python docs/gen_layer_pages.py OUT` writes
them to a folder, to read them without MkDocs.
"""
from __future__ import annotations

import ast
import inspect
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from google.protobuf.descriptor import FieldDescriptor  # noqa: E402

from minicaffe.layer import Layer, layer_registry  # noqa: E402
from minicaffe.proto import caffe_pb2  # noqa: E402

PROTO = ROOT / "minicaffe" / "proto" / "caffe.proto"
KERNELS = ROOT / "opencl"
TESTS = ROOT / "tests" / "layers"

_TYPE_NAMES = {v: k[len("TYPE_"):].lower() for k, v in vars(FieldDescriptor).items()
               if k.startswith("TYPE_")}


def page_path(layer_type: str) -> str:
    """Where the page of `layer_type` lives in the site (relative to docs/)."""
    return f"layers/{layer_type.lower()}.md"


# ---------------------------------------------------------------- caffe.proto comments

def proto_comments(text: str | None = None) -> dict[tuple[str, str], str]:
    """{(message, field): comment} from the `//` lines above a field and after it."""
    text = PROTO.read_text() if text is None else text
    comments, stack, pending = {}, [], []
    field = re.compile(r"^\s*(optional|repeated|required)\s+[\w.]+\s+(\w+)\s*=\s*\d+[^;]*;\s*(//\s*(.*))?$")
    for line in text.splitlines():
        stripped = line.strip()
        if m := re.match(r"^(message|enum)\s+(\w+)\s*\{", stripped):
            stack.append(m[2])
            pending = []
        elif stripped.startswith("}"):
            if stack:
                stack.pop()
            pending = []
        elif stripped.startswith("//"):
            pending.append(stripped.lstrip("/").strip())
        elif (m := field.match(line)) and stack:
            words = pending + ([m[4].strip()] if m[4] else [])
            if words:
                comments[(stack[-1], m[2])] = " ".join(words)
            pending = []
        else:
            pending = []
    return comments


# ---------------------------------------------------------------- families

# The families of Caffe's layer catalogue (docs/tutorial/layers.md), in its order: the
# anchor of the family's section in layers/index.md, its heading, and a sentence about it.
FAMILIES = {
    "data": ("Data layers",
             "Where blobs enter a net (or, for HDF5Output, leave it): these layers take no "
             "bottoms and fill their tops from a database, files, memory or constants."),
    "vision": ("Vision layers",
               "Layers that use the spatial layout of an N x C x H x W blob: each output value "
               "comes from a window of the image, so height and width keep their meaning."),
    "recurrent": ("Recurrent layers",
                  "Layers that unroll a small net over the time steps of a sequence, carrying a "
                  "hidden state from each step to the next."),
    "common": ("Common layers",
               "General-purpose layers found in nets of every kind: fully connected products, "
               "dropout and embeddings."),
    "normalization": ("Normalization layers",
                      "Layers that rescale values by statistics of a neighbourhood, an example or "
                      "the batch, so later layers see a steady range; Scale and Bias often follow "
                      "them."),
    "activation": ("Activation / Neuron layers",
                   "Layers that apply a function to each value on its own: one bottom, one top "
                   "of the same shape. Bias and Scale, which add or multiply a blob broadcast "
                   "along some axes, sit here as in Caffe."),
    "utility": ("Utility layers",
                "Layers that copy, split, join, reshape, select or reduce blobs, routing data "
                "between the layers that compute."),
    "loss": ("Loss layers",
             "Layers that compare a prediction with a target and give the scalar that training "
             "minimises. Accuracy sits here as in Caffe, though it has no gradient."),
}

# The family of each of Caffe's 61 layer types (those its REGISTER_LAYER_CLASS /
# REGISTER_LAYER_CREATOR calls name), keyed by type name, so a type that minicaffe gains
# later already has its place in the index. Within a family, the index keeps this order.
# Caffe's catalogue leaves out Clip, Swish (activations), Tile (utility) and LSTMUnit (the
# step of LSTM); they are placed with their kin.
LAYER_FAMILY = {
    # data
    "Data": "data", "ImageData": "data", "HDF5Data": "data", "HDF5Output": "data",
    "Input": "data", "WindowData": "data", "MemoryData": "data", "DummyData": "data",
    # vision
    "Convolution": "vision", "Pooling": "vision", "SPP": "vision", "Crop": "vision",
    "Deconvolution": "vision", "Im2col": "vision",
    # recurrent
    "RNN": "recurrent", "LSTM": "recurrent", "LSTMUnit": "recurrent",
    # common
    "InnerProduct": "common", "Dropout": "common", "Embed": "common",
    # normalization
    "LRN": "normalization", "MVN": "normalization", "BatchNorm": "normalization",
    # activation / neuron
    "ReLU": "activation", "PReLU": "activation", "ELU": "activation", "Sigmoid": "activation",
    "TanH": "activation", "AbsVal": "activation", "Power": "activation", "Exp": "activation",
    "Log": "activation", "BNLL": "activation", "Threshold": "activation", "Clip": "activation",
    "Swish": "activation", "Bias": "activation", "Scale": "activation",
    # utility
    "Flatten": "utility", "Reshape": "utility", "BatchReindex": "utility", "Split": "utility",
    "Concat": "utility", "Slice": "utility", "Eltwise": "utility", "Filter": "utility",
    "Parameter": "utility", "Reduction": "utility", "Silence": "utility", "Tile": "utility",
    "ArgMax": "utility", "Softmax": "utility", "Python": "utility",
    # loss
    "MultinomialLogisticLoss": "loss", "InfogainLoss": "loss", "SoftmaxWithLoss": "loss",
    "EuclideanLoss": "loss", "HingeLoss": "loss", "SigmoidCrossEntropyLoss": "loss",
    "Accuracy": "loss", "ContrastiveLoss": "loss",
}
# minicaffe's own layer types (extensions, not in Caffe), each in the family it belongs to;
# kept apart from Caffe's catalogue above, the index lists them after Caffe's types.
EXTENSION_FAMILY = {
    "DistillationLoss": "loss",  # Hinton et al.'s soft targets (minicaffe/layers/distillation_loss.py)
}


def family_of(layer_type: str) -> str:
    """The family key of a layer type; a type outside Caffe's catalogue must be added above."""
    if layer_type in EXTENSION_FAMILY:
        return EXTENSION_FAMILY[layer_type]
    if layer_type not in LAYER_FAMILY:
        raise ValueError(f"layer type {layer_type!r} has no family: add it to LAYER_FAMILY in "
                         f"docs/gen_layer_pages.py (one of {', '.join(FAMILIES)})")
    return LAYER_FAMILY[layer_type]


def types_by_family(types) -> dict[str, list[str]]:
    """{family: the given types of that family, in LAYER_FAMILY's order}, every family present."""
    order = {t: i for i, t in enumerate({**LAYER_FAMILY, **EXTENSION_FAMILY})}
    grouped = {family: [] for family in FAMILIES}
    for t in sorted(types, key=lambda t: order.get(t, -1)):
        grouped[family_of(t)].append(t)
    return grouped


# ---------------------------------------------------------------- parameters

def _functions(attribute) -> list:
    """The Python functions behind a class attribute (method, static/class method, property)."""
    if isinstance(attribute, (staticmethod, classmethod)):
        attribute = attribute.__func__
    if isinstance(attribute, property):
        return [f for f in (attribute.fget, attribute.fset) if f is not None]
    return [attribute] if inspect.isfunction(attribute) else []


def _resolve(cls: type, name: str, after: type | None = None):
    """(class, attribute) that `self.name` finds for an instance of `cls`, as Python looks it
    up through the MRO; `after` starts the search past that class (`super().name`)."""
    mro = cls.__mro__
    for klass in mro[mro.index(after) + 1 if after else 0:]:
        if name in vars(klass):
            return klass, vars(klass)[name]
    return None, None


def _parse(function) -> ast.AST | None:
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):  # built in, or made at run time
        return None


def code_run_by(cls: type[Layer]) -> list:
    """The functions that run for a layer of class `cls`: starting from the methods of the
    Layer contract (what the Net calls), every `self.name` and `super().name` they use,
    resolved through the MRO as Python does, and every plain minicaffe function they call;
    and so on from those. A base-class method the layer never reaches is not included."""
    # The contract's methods as the layer resolves them, and every method of its own class.
    roots = [_resolve(cls, name) for name in vars(Layer)] + [(cls, attr) for attr in vars(cls).values()]
    todo = [(owner, f) for owner, attr in roots for f in _functions(attr)]
    seen, run = set(), []
    while todo:
        owner, function = todo.pop()
        if function in seen:
            continue
        seen.add(function)
        run.append(function)
        tree = _parse(function)
        for node in ast.walk(tree) if tree is not None else ():
            found = None
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    node.value.id in ("self", "cls"):
                found = _resolve(cls, node.attr)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Call) and \
                    isinstance(node.value.func, ast.Name) and node.value.func.id == "super" and owner:
                found = _resolve(cls, node.attr, after=owner)
            elif isinstance(node, ast.Call):  # f(...) or module.f(...), f a minicaffe function
                target = None
                if isinstance(node.func, ast.Name):
                    target = function.__globals__.get(node.func.id)
                elif isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
                    module = function.__globals__.get(node.func.value.id)
                    target = getattr(module, node.func.attr, None) if inspect.ismodule(module) else None
                if inspect.isfunction(target) and target.__module__.startswith("minicaffe"):
                    todo.append((None, target))
            if found and found[0] is not None:
                todo += [(found[0], f) for f in _functions(found[1])]
    return run


def _written(tree: ast.AST) -> set[int]:
    """ids of the attribute nodes an assignment writes through (`inner.softmax_param.axis =
    ...` sets a field of a copy; it reads nothing from the layer's parameters)."""
    written = set()
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            while isinstance(target, (ast.Attribute, ast.Subscript)):
                written.add(id(target))
                target = target.value
    return written


def param_fields(cls: type[Layer]) -> list[str]:
    """The LayerParameter `*_param` fields the code run for a layer reads (`code_run_by`).

    A field counts where the code takes it as an attribute (`self.layer_param.loss_param`),
    not where a docstring, comment or message names it, nor where the code only writes it.
    So EuclideanLoss, which inherits LossLayer's `normalization_mode` but never calls it,
    lists no `loss_param`, while SoftmaxWithLoss, which calls it, does.
    """
    layer_fields = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    found = []
    for function in code_run_by(cls):
        tree = _parse(function)
        if tree is None:
            continue
        written = _written(tree)
        for node in ast.walk(tree):
            name = node.attr if isinstance(node, ast.Attribute) else None
            if name and name.endswith("_param") and id(node) not in written and \
                    name in layer_fields and layer_fields[name].message_type and name not in found:
                found.append(name)
    # In the order of LayerParameter's fields, so pages agree however the code is arranged.
    order = list(layer_fields)
    return sorted(found, key=order.index)


def _default(field) -> str:
    if field.is_repeated:
        return "[]"
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return "unset"
    if field.type == FieldDescriptor.TYPE_ENUM:
        return field.enum_type.values_by_number[field.default_value].name
    if field.type == FieldDescriptor.TYPE_STRING:
        return f'"{field.default_value}"'
    if field.type == FieldDescriptor.TYPE_BOOL:
        return str(field.default_value).lower()
    if field.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return f"{field.default_value:g}"
    return str(field.default_value)


def _type(field) -> str:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return field.message_type.name
    if field.type == FieldDescriptor.TYPE_ENUM:
        return f"{field.enum_type.name} ({' / '.join(v.name for v in field.enum_type.values)})"
    return _TYPE_NAMES[field.type]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def params_markdown(cls: type[Layer], comments: dict) -> str:
    fields = param_fields(cls)
    if not fields:
        return f"A {cls.type} layer has no `*_param` message: only the common LayerParameter fields apply.\n"
    out = []
    for name in fields:
        message = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name[name].message_type
        notes = {f.name: comments.get((message.name, f.name), "") for f in message.fields}
        meaning = any(notes.values())  # caffe.proto comments only some messages
        out += [f"### `{name}` ({message.name})", "",
                "| field | type | default |" + (" meaning |" if meaning else ""),
                "|---|---|---|" + ("---|" if meaning else "")]
        for field in message.fields:
            label = "repeated " if field.is_repeated else ""
            out.append(f"| `{field.name}` | {label}{_cell(_type(field))} | `{_default(field)}` |"
                       + (f" {_cell(notes[field.name])} |" if meaning else ""))
        out.append("")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- blob counts

def blob_rules(cls: type[Layer]) -> list[str]:
    rules = []
    for side in ("bottom", "top"):
        exact, low, high = (getattr(cls, f"{k}_{side}_blobs") for k in ("exact_num", "min", "max"))
        if exact >= 0:
            rules.append(f"{side}s: exactly {exact}")
        elif low >= 0 and high >= 0:
            rules.append(f"{side}s: {low} to {high}")
        elif low >= 0:
            rules.append(f"{side}s: at least {low}")
        elif high >= 0:
            rules.append(f"{side}s: at most {high}")
        else:
            rules.append(f"{side}s: any number")
    if cls.equal_num_bottom_top_blobs:
        rules.append("as many tops as bottoms")
    if cls.default_loss_weight:
        rules.append(f"loss layer: its first top weighs {cls.default_loss_weight:g} in the objective")
    return rules


# ---------------------------------------------------------------- sources

def split_module(path: Path) -> tuple[str, str]:
    """(module docstring, the source after it)."""
    source = path.read_text()
    tree = ast.parse(source)
    doc = ast.get_docstring(tree) or ""
    body = source
    if tree.body and isinstance(tree.body[0], ast.Expr) and isinstance(tree.body[0].value, ast.Constant) \
            and isinstance(tree.body[0].value.value, str):
        body = "\n".join(source.splitlines()[tree.body[0].end_lineno:]).lstrip("\n")
    return doc, body


def base_modules(cls: type[Layer]) -> list[Path]:
    """The modules of the layer's base classes below Layer, where they are not its own
    (e.g. `base_conv.py` for Convolution, `neuron.py` for ReLU)."""
    own, paths = Path(inspect.getfile(cls)), []
    for klass in cls.__mro__[1:]:
        if klass is Layer or not issubclass(klass, Layer):
            continue
        path = Path(inspect.getfile(klass))
        if path != own and path not in paths:
            paths.append(path)
    return paths


# Engine functions that launch a shared kernel file for the layer that calls them.
SHARED_KERNEL_CALLS = {"opencl.im2col": "im2col.cl", "opencl.col2im": "im2col.cl",
                       "opencl_gemm.": "gemm.cl"}


def kernel_files(cls: type[Layer], stem: str) -> list[Path]:
    """`opencl/<stem>.cl` first, then the other kernel files the module (or its bases)
    launch, directly or through the engine's im2col and GEMM functions."""
    source = "\n".join(p.read_text() for p in [Path(inspect.getfile(cls))] + base_modules(cls))
    names = [f"{stem}.cl"] + re.findall(r'"(\w+\.cl)"', source)
    names += [file for call, file in SHARED_KERNEL_CALLS.items() if call in source]
    seen, files = set(), []
    for name in names:
        if name not in seen and (KERNELS / name).exists():
            seen.add(name)
            files.append(KERNELS / name)
    return files


def no_kernel_reason(cls: type[Layer]) -> str:
    if not cls.has_gpu():
        return f"{cls.type} has no OpenCL implementation: in GPU mode it raises a clear error."
    if cls.forward_gpu is getattr(cls, "forward_cpu", None):
        if "create_layer(" in inspect.getsource(sys.modules[cls.__module__]):
            return (f"{cls.type} has no kernel: its GPU methods are its CPU methods, which run "
                    "inner layers; each of those runs its own kernels on the device.")
        return (f"{cls.type} has no kernel: its GPU methods are its CPU methods. It only reshapes, "
                "shares or loads memory, so there is nothing to compute on the device; "
                "SyncedMemory copies the values to the device when a kernel first reads them.")
    return f"{cls.type} has no kernel file of its own: its GPU methods reuse other layers' kernels."


def gradient_tests(stem: str) -> str:
    """The functions of tests/layers/test_<stem>.py that run the gradient checker."""
    path = TESTS / f"test_{stem}.py"
    if not path.exists():
        return ""
    source = path.read_text()
    lines = source.splitlines()
    chunks = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            text = "\n".join(lines[start - 1:node.end_lineno])
            if "GradientChecker" in text or "check_gradient" in text:
                chunks.append(text)
    return "\n\n\n".join(chunks)


def fence(code: str, lang: str) -> str:
    ticks = "````" if "```" in code else "```"
    return f"{ticks}{lang}\n{code.rstrip()}\n{ticks}"


# ---------------------------------------------------------------- the page

def layer_page(layer_type: str, cls: type[Layer], comments: dict) -> str:
    module_path = Path(inspect.getfile(cls))
    stem = module_path.stem
    rel = module_path.relative_to(ROOT)
    module_doc, module_body = split_module(module_path)
    class_doc = inspect.cleandoc(cls.__doc__ or "")
    kernels = kernel_files(cls, stem)
    tests = gradient_tests(stem)
    bases = [(path.relative_to(ROOT), *split_module(path)) for path in base_modules(cls)]

    # No table of contents on layer pages: the width goes to the two code columns.
    out = ["---", "hide:", "  - toc", "---", "", f"# {layer_type}", ""]
    family = family_of(layer_type)
    out += [f"**Family:** [{FAMILIES[family][0]}](index.md#{family})", ""]
    files = [f"`{rel}`"] + [f"`{base}`" for base, _, _ in bases] + \
            [f"`opencl/{k.name}`" for k in kernels] + \
            ([f"`tests/layers/test_{stem}.py`"] if (TESTS / f"test_{stem}.py").exists() else [])
    out += [f"**Files:** {' · '.join(files)}", ""]
    out += ["## What it computes", "", module_doc, ""]
    if class_doc and "see the module docstring" not in class_doc.lower():
        out += [f"`{cls.__name__}`:", "", class_doc, ""]
    for base, base_doc, _ in bases:
        out += [f"### Shared with other layers: `{base}`", "", base_doc, ""]
    out += ["## Blobs and shapes", ""]
    out += [f"- {rule}" for rule in blob_rules(cls)]
    out += ["", "The shapes of the tops follow from the bottoms as the docstring above says; "
            "`reshape` computes them.", ""]
    out += ["## Parameters", "", "Defaults are Caffe's, read from the protobuf descriptor "
            "(`minicaffe/proto/caffe.proto`).", "", params_markdown(cls, comments)]

    out += ["## Implementation: numpy and OpenCL", "",
            "The numpy module (left) and its device twin (right) read line for line alike.", "",
            '<div class="code-pair" markdown>', "", '<div markdown>', "",
            f"**numpy** · `{rel}`", "", fence(module_body, "python"), ""]
    for base, _, base_body in bases:
        out += [f"**numpy** · `{base}`", "", fence(base_body, "python"), ""]
    out += ["</div>", "", '<div markdown>', ""]
    if kernels:
        for k in kernels:
            out += [f"**OpenCL** · `opencl/{k.name}`", "", fence(k.read_text(), "c"), ""]
    else:
        out += ["**OpenCL**", "", f'!!! note "No kernel"\n    {no_kernel_reason(cls)}', ""]
    out += ["</div>", "", "</div>", ""]

    out += ["## Gradient check", ""]
    if tests:
        out += [f"From `tests/layers/test_{stem}.py`: Caffe's `GradientChecker` compares the "
                "analytic gradients of `backward` with centred finite differences of `forward`, "
                "on shapes and parameters drawn by hypothesis.", "", fence(tests, "python"), ""]
    else:
        out += [f"{layer_type} has no learnable computation to differentiate, so "
                f"`tests/layers/test_{stem}.py` checks its values and shapes instead of running "
                "the gradient checker.", ""]
    return "\n".join(out)


def index_page(registry: dict[str, type[Layer]]) -> str:
    """layers/index.md: the registered types grouped by family, one table per family, each
    family's section with a fixed anchor (`#loss`) that the layer pages link to."""
    caffes = [t for t in registry if t in LAYER_FAMILY]
    own = sorted(t for t in registry if t in EXTENSION_FAMILY)
    ours = f", and {len(own)} of minicaffe's own: {', '.join(own)}" if own else ""
    out = ["# Layers", "",
           f"One page per layer type minicaffe registers ({len(caffes)} of Caffe's "
           f"{len(LAYER_FAMILY)}{ours}), generated from the layer's module, its kernel and its "
           "tests. The types are grouped by family as in Caffe's own layer catalogue.", ""]
    for family, types in types_by_family(registry).items():
        title, intro = FAMILIES[family]
        out += [f"## {title} {{ #{family} }}", "", intro, ""]
        if types:
            out += ["| type | summary | OpenCL |", "|---|---|---|"]
            for t in types:
                cls = registry[t]
                stem = Path(inspect.getfile(cls)).stem
                # The docstring's first paragraph (a sentence, often wrapped over lines).
                summary = " ".join(split_module(Path(inspect.getfile(cls)))[0].split("\n\n")[0].split())
                summary = summary.split(": ", 1)[-1]  # "ReLU: the rectified ..." -> "the rectified ..."
                kernel = f"`{stem}.cl`" if (KERNELS / f"{stem}.cl").exists() else "none"
                shared = re.search(r"opencl/(\w+\.cl)", inspect.getmodule(cls).__doc__ or "")
                if kernel == "none" and shared:  # a twin shared with another layer (Deconvolution)
                    kernel = f"`{shared[1]}` (shared)"
                out.append(f"| [{t}]({t.lower()}.md) | {_cell(summary)} | {kernel} |")
            out.append("")
        missing = [t for t, f in LAYER_FAMILY.items() if f == family and t not in registry]
        if missing:
            out += [f"Not in minicaffe yet: {', '.join(missing)}.", ""]
    return "\n".join(out)


def layer_pages() -> dict[str, str]:
    """{path relative to docs/: markdown} for every registered layer type, and the index."""
    comments = proto_comments()
    registry = layer_registry()
    pages = {page_path(t): layer_page(t, cls, comments) for t, cls in sorted(registry.items())}
    pages["layers/index.md"] = index_page(registry)
    return pages


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "site-layer-pages")
    for rel, text in layer_pages().items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    print(f"wrote {len(layer_pages())} pages under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
