"""The project's shape, enforced: numpy layers paired with kernels, README and CI in step."""
import ast
import inspect
import shutil
import subprocess
import re
from pathlib import Path

import pytest

from minicaffe.layer import layer_registry

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "opencl"
# Kernel files that serve many layers rather than twin one module.
SHARED_KERNELS = {"common", "math", "gemm", "im2col"}
# Layers whose GPU body is their CPU body: they only share memory or do no arithmetic
# (Flatten, Reshape, Input, Parameter, Silence), fill the host side that the next layer
# copies in (the data layers), only run inner layers, which pick their own engine (SPP, RNN,
# LSTM), or run the user's code on the host (Python). Silence's backward only zeroes diffs,
# with the shared opencl.fill.
NO_ARITHMETIC = {"Flatten", "Reshape", "Input", "Parameter", "Silence", "SPP", "RNN", "LSTM", "Python",
                 "Data", "DummyData", "MemoryData", "HDF5Data", "HDF5Output", "ImageData", "WindowData"}
# Layers whose device arithmetic is all in the kernels of a base class shared with another
# layer: Deconvolution runs base_conv.py's helpers, whose twin is convolution.cl.
SHARED_TWIN = {"Deconvolution": "convolution"}


def stem(cls) -> str:
    return Path(inspect.getfile(cls)).stem


@pytest.mark.parametrize("type_name", sorted(layer_registry()))
def test_every_layer_has_an_opencl_twin(type_name):
    cls = layer_registry()[type_name]
    assert cls.has_gpu(), f"{type_name} has no forward_gpu"
    if type_name in NO_ARITHMETIC:
        assert cls.forward_gpu is cls.forward_cpu
        return
    twin = SHARED_TWIN.get(type_name, stem(cls))
    kernel = KERNELS / f"{twin}.cl"
    assert kernel.exists(), f"{type_name}: no {kernel.relative_to(ROOT)}"
    assert f"opencl/{twin}.cl" in inspect.getmodule(cls).__doc__, \
        f"{type_name}: the module docstring should name its device twin"


def test_no_orphan_kernels():
    stems = {stem(cls) for cls in layer_registry().values()}
    stems |= {p.stem for p in (ROOT / "minicaffe" / "solvers").glob("*.py")}
    stems |= {"loss"}  # the LossLayer base (layers/loss.py) has a kernel its subclasses share
    # A top-level module that is no layer but runs its own kernels (quantize.py's int8
    # inference) twins opencl/<stem>.cl when its docstring names that file.
    stems |= {p.stem for p in (ROOT / "minicaffe").glob("*.py")
              if f"opencl/{p.stem}.cl" in (ast.get_docstring(ast.parse(p.read_text())) or "")}
    orphans = [p.name for p in KERNELS.glob("*.cl") if p.stem not in stems | SHARED_KERNELS]
    assert not orphans, f"kernels with no numpy twin: {orphans}"


def readme_commands() -> list[str]:
    return re.findall(r"```sh\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)[:2]


def test_readme_opens_with_train_and_test_commands():
    train, test = readme_commands()
    assert "pip install" in train and "train_lenet.sh" in train
    assert "pip install -e '.[test]'" in test and "pytest" in test


def test_ci_runs_the_readme_test_command_verbatim():
    _, test = readme_commands()
    lines = [l for l in (ROOT / ".ci" / "run").read_text().splitlines() if l and not l.startswith("#")]
    assert lines[-1] == test


def git(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


needs_git = pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                               reason="not a git checkout")


@needs_git
def test_no_tracked_file_is_one_gitignore_ignores():
    # e.g. internal notes committed before their folder was ignored
    tracked_but_ignored = git("ls-files", "--cached", "--ignored", "--exclude-standard").stdout.split()
    assert tracked_but_ignored == []


@needs_git
def test_what_the_readme_commands_create_is_ignored():
    made = ["lenet.svg", "curves.png", "train.log", "examples/mnist/mnist_train_lmdb/",
            "examples/mnist/lenet_iter_10000.caffemodel", "examples/mnist/lenet_iter_10000.solverstate"]
    ignored = git("check-ignore", "--no-index", *made).stdout.split()
    assert ignored == made


# ---------------------------------------------------------------- the import graph
def module_imports() -> dict[str, set[str]]:
    """Every minicaffe module -> the minicaffe modules it imports, anywhere in its code
    (a function-level import still ties the two together)."""
    package = ROOT / "minicaffe"
    files = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
             for p in package.rglob("*.py") if "proto" not in p.parts}
    graph = {}
    for name, path in files.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files else node.module
                          for a in node.names}
        graph[name] = {m for m in found if m in files and m != name}
    return graph


def layer_modules() -> set[str]:
    """The modules that define a registered layer type (not the bases and helpers)."""
    return {f"minicaffe.layers.{stem(cls)}" for cls in layer_registry().values()}


def test_the_contract_imports_no_layer():
    graph = module_imports()
    for core in ("minicaffe.layer", "minicaffe.blob", "minicaffe.syncedmem"):
        assert not {m for m in graph[core] if m.startswith("minicaffe.layers")}, core


def test_no_layer_imports_another_layer():
    graph, layers = module_imports(), layer_modules()
    assert {m: graph[m] & layers for m in layers if graph[m] & layers} == {}


def test_no_import_cycle():
    graph = module_imports()
    done, path = set(), []

    def visit(module):
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module):] + [module]))
        if module not in done:
            path.append(module)
            for imported in sorted(graph[module]):
                # a package importing its own submodules is how it fills registries, not a cycle
                if not imported.startswith(module + "."):
                    visit(imported)
            path.pop()
            done.add(module)

    for module in sorted(graph):
        visit(module)


def test_the_layers_package_imports_every_layer_module():
    listed = module_imports()["minicaffe.layers"]
    registering = {f"minicaffe.layers.{p.stem}" for p in (ROOT / "minicaffe" / "layers").glob("[!_]*.py")
                   if "@register_layer" in p.read_text()}
    assert registering - listed == set()
