"""The docs site: every registered layer type has a generated page, and the site builds strictly."""
import importlib.util
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minicaffe.layer import layer_registry

ROOT = Path(__file__).resolve().parent.parent


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_layer_pages", ROOT / "docs/gen_layer_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_registered_layer_type_has_a_page():
    gen = load_generator()
    pages = gen.layer_pages()
    for layer_type, cls in layer_registry().items():
        page = pages.get(gen.page_path(layer_type))
        assert page is not None, f"no docs page for layer type {layer_type}"
        assert f"# {layer_type}" in page
        # The page shows the module's own code, not a copy.
        body = gen.split_module(Path(inspect.getfile(cls)))[1]
        assert body.strip().splitlines()[-1] in page
    assert "layers/index.md" in pages


def test_layer_page_parts():
    gen = load_generator()
    pages = gen.layer_pages()
    conv = pages[gen.page_path("Convolution")]
    assert "`num_output`" in conv and "`bias_term` | bool | `true`" in conv  # from the descriptor
    assert '<div class="code-pair" markdown>' in conv and "```c" in conv  # numpy beside OpenCL
    assert "GradientChecker" in conv  # the gradient test
    assert "opencl/im2col.cl" in conv and "opencl/gemm.cl" in conv  # the kernels doing the work
    assert "No kernel" in pages[gen.page_path("Flatten")]
    pooling = pages[gen.page_path("Pooling")]
    assert "PoolMethod (MAX / AVE / STOCHASTIC) | `MAX`" in pooling
    loss = pages[gen.page_path("SoftmaxWithLoss")]
    assert "`loss_param`" in loss and "`softmax_param`" in loss


@pytest.mark.skipif(shutil.which("mkdocs") is None and importlib.util.find_spec("mkdocs") is None,
                    reason="mkdocs is not installed (pip install -e '.[test]')")
def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    gen = load_generator()
    for layer_type in layer_registry():
        assert (site / gen.page_path(layer_type).replace(".md", "/index.html")).exists(), layer_type
    for figure in ("lr_policies.svg", "lenet_training.png"):
        assert (site / "assets/generated" / figure).stat().st_size > 1000
    solver = (site / "architecture/solver/index.html").read_text()
    assert "lr_policies.svg" in solver and 'class="arithmatex"' in solver
    assert (site / "assets/katex/katex.min.js").exists()  # maths render offline
    # Every lesson is on the site, with the starter code the learner completes.
    for folder in sorted((ROOT / "lessons").glob("[0-9][0-9]_*/")):
        page = (site / "lessons" / folder.name / "index.html").read_text()
        assert "NotImplementedError" in page and f"lessons/{folder.name}" in page, folder.name
    assert (site / "lessons/index.html").exists()
    # The how-to page shows the real files of its example layer, read at build time.
    how_to = (site / "how-to-add-a-layer/index.html").read_text()
    for shown in ("TanHLayer", "tanh_forward", "check_gradient_eltwise", "minicaffe/layers/tanh.py"):
        assert shown in how_to, shown
