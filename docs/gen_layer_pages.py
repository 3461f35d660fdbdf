"""One docs page per registered layer type, written from the code itself.

For each type in `minicaffe.layer.layer_registry()` the page shows, all read from the
repository at build time (nothing is copied by hand):

* the module and class docstrings (what it computes, forward/backward maths, shapes);
* the blob-count rules (class attributes) and the prototxt parameters: every field of
  each `*_param` message the layer reads, with type and default from the protobuf
  descriptor and the comment from `minicaffe/proto/caffe.proto`;
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


# ---------------------------------------------------------------- parameters

def param_fields(cls: type[Layer]) -> list[str]:
    """The LayerParameter `*_param` fields a layer class (or a base class of it) reads."""
    layer_fields = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    found = []
    for klass in cls.__mro__:
        if klass is Layer or not issubclass(klass, Layer):
            continue
        source = inspect.getsource(sys.modules[klass.__module__])
        # Not a keyword argument (`pooling_param=...`): that builds an inner layer's message.
        for name in re.findall(r"\b(\w+_param)\b(?!\s*=[^=])", source):
            if name in layer_fields and layer_fields[name].message_type and name not in found:
                found.append(name)
    return found


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


def layer_pages() -> dict[str, str]:
    """{path relative to docs/: markdown} for every registered layer type, and the index."""
    comments = proto_comments()
    registry = layer_registry()
    pages = {page_path(t): layer_page(t, cls, comments) for t, cls in sorted(registry.items())}
    rows = ["# Layers", "",
            "One page per layer type minicaffe registers, generated from the layer's module, its "
            "kernel and its tests.", "",
            "| type | summary | OpenCL |", "|---|---|---|"]
    for t, cls in sorted(registry.items()):
        stem = Path(inspect.getfile(cls)).stem
        summary = (split_module(Path(inspect.getfile(cls)))[0].splitlines() or [""])[0]
        summary = summary.split(": ", 1)[-1]  # "ReLU: the rectified ..." -> "the rectified ..."
        kernel = f"`{stem}.cl`" if (KERNELS / f"{stem}.cl").exists() else "none"
        rows.append(f"| [{t}]({t.lower()}.md) | {_cell(summary)} | {kernel} |")
    pages["layers/index.md"] = "\n".join(rows) + "\n"
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
