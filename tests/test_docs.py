"""The docs site: every registered layer type has a generated page, and the site builds strictly."""
import functools
import importlib.util
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minicaffe.layer import Layer, layer_registry

ROOT = Path(__file__).resolve().parent.parent


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_layer_pages", ROOT / "docs/gen_layer_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def generated():
    """The generator and its pages, made once for the tests below (about a second each time)."""
    gen = load_generator()
    return gen, gen.layer_pages()


def test_every_registered_layer_type_has_a_page():
    gen, pages = generated()
    for layer_type, cls in layer_registry().items():
        page = pages.get(gen.page_path(layer_type))
        assert page is not None, f"no docs page for layer type {layer_type}"
        assert f"# {layer_type}" in page
        # The page shows the module's own code, not a copy.
        body = gen.split_module(Path(inspect.getfile(cls)))[1]
        assert body.strip().splitlines()[-1] in page
    assert "layers/index.md" in pages


def test_layer_page_parts():
    gen, pages = generated()
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


def test_every_registered_type_has_a_family_and_its_section_in_the_index():
    gen, pages = generated()
    index = pages["layers/index.md"]
    # The index's sections, in Caffe's catalogue order, each with its own anchor.
    headings = [f"## {title} {{ #{family} }}" for family, (title, _) in gen.FAMILIES.items()]
    starts = [index.index(h) for h in headings]
    assert starts == sorted(starts)
    for layer_type in layer_registry():
        family = gen.family_of(layer_type)
        assert family in gen.FAMILIES, layer_type
        # Listed once, under its family's heading, and its page links back to that section.
        link = f"| [{layer_type}]({layer_type.lower()}.md) |"
        assert index.count(link) == 1, layer_type
        section = list(gen.FAMILIES).index(family)
        end = starts[section + 1] if section + 1 < len(starts) else len(index)
        assert starts[section] < index.index(link) < end, layer_type
        title = gen.FAMILIES[family][0]
        assert f"**Family:** [{title}](index.md#{family})" in pages[gen.page_path(layer_type)]
    with pytest.raises(ValueError, match="'Sparse' has no family: add it to LAYER_FAMILY"):
        gen.family_of("Sparse")


def test_family_mapping_covers_caffes_catalogue():
    gen = load_generator()
    # Caffe registers 61 layer types (REGISTER_LAYER_CLASS / _CREATOR in src/caffe/layers).
    assert len(gen.LAYER_FAMILY) == 61
    assert set(gen.LAYER_FAMILY.values()) == set(gen.FAMILIES)
    # Placements from Caffe's docs/tutorial/layers.md, where a reader might guess otherwise.
    expected = {"Accuracy": "loss", "Softmax": "utility", "ArgMax": "utility", "Bias": "activation",
                "Scale": "activation", "Embed": "common", "Crop": "vision", "Input": "data",
                "BatchNorm": "normalization", "LSTM": "recurrent"}
    assert {t: gen.LAYER_FAMILY[t] for t in expected} == expected


class _Base(Layer):
    def reshape(self, bottom, top):  # part of the Layer contract: runs for every subclass
        self.axis = self.layer_param.concat_param.axis

    def normalizer(self):  # runs only for subclasses that call it
        return self.layer_param.loss_param.normalization


class _Quiet(_Base):
    """Names `loss_param` and `relu_param` in words only."""

    def layer_setup(self, bottom, top):
        inner = type(self.layer_param)()
        inner.softmax_param.axis = 2  # writes a copy's field: reads nothing of this layer's
        self.message = "loss_param.normalization"  # a string, not a read
        self.field = self._read()

    def _read(self):
        return self.layer_param.tanh_param


class _Caller(_Base):
    def forward_cpu(self, bottom, top):
        self.normalizer()


class _Override(_Base):
    def reshape(self, bottom, top):  # replaces the base's reshape without calling it
        pass


class _Extend(_Base):
    def reshape(self, bottom, top):
        super().reshape(bottom, top)


def test_param_fields_are_those_the_code_run_reads():
    gen = load_generator()
    assert set(gen.param_fields(_Quiet)) == {"concat_param", "tanh_param"}
    assert set(gen.param_fields(_Caller)) == {"concat_param", "loss_param"}
    assert gen.param_fields(_Override) == []
    assert gen.param_fields(_Extend) == ["concat_param"]


def test_loss_pages_list_loss_param_only_where_it_is_read():
    """SoftmaxWithLoss reads loss_param (ignore_label, normalization) as Caffe's
    softmax_loss_layer.cpp does; EuclideanLoss divides by the batch size and reads no
    parameter, as euclidean_loss_layer.cpp; both inherit loss.py's normalization_mode."""
    gen, pages = generated()
    assert "### `loss_param`" in pages[gen.page_path("SoftmaxWithLoss")]
    euclidean = pages[gen.page_path("EuclideanLoss")]
    assert "### `loss_param`" not in euclidean and "has no `*_param` message" in euclidean
    for layer_type in ("HingeLoss", "MultinomialLogisticLoss", "ContrastiveLoss"):
        if layer_type in layer_registry():  # added by issue 10
            assert "loss_param" not in gen.param_fields(layer_registry()[layer_type]), layer_type


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


def test_every_parameter_of_every_layer_says_what_it_means():
    # The "meaning" column comes from caffe.proto's comments: none may be empty.
    gen, _ = generated()
    from minicaffe.proto import caffe_pb2
    comments = gen.proto_comments()
    missing = []
    for layer_type, cls in sorted(layer_registry().items()):
        for name in gen.param_fields(cls):
            message = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name[name].message_type
            missing += [f"{layer_type}: {message.name}.{f.name}" for f in message.fields
                        if not comments.get((message.name, f.name))]
    assert missing == []
