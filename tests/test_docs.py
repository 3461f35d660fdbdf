"""The docs site: every registered layer type has a generated page, and the site builds strictly."""
import functools
import importlib.util
import inspect
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minicaffe.layer import Layer, layer_registry

ROOT = Path(__file__).resolve().parent.parent


def load_model_zoo():
    spec = importlib.util.spec_from_file_location("gen_model_zoo", ROOT / "docs/gen_model_zoo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    # The model zoo: a row and a section per net, and a drawing each where dot could make it.
    from minicaffe.testing.zoo import ZOO
    zoo = load_model_zoo()
    page = (site / "model-zoo/index.html").read_text()
    for net in ZOO:
        assert f'id="{net.key}"' in page, net.key  # its section
        # Its row: the table needs Caffe's definitions (../shared/caffe_models).
        assert (f'<a href="#{net.key}">{net.title}</a></td>' in page) == zoo.models_available(), net.key
        if zoo.can_draw():
            assert zoo.drawing_path(net) in page
            svg = (site / zoo.drawing_path(net)).read_bytes()
            assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg, net.key


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


# ---------------------------------------------------------------- the model-zoo page

def zoo_net(key):
    from minicaffe.testing.zoo import ZOO
    return next(net for net in ZOO if net.key == key)


def test_model_zoo_figures_by_hand():
    from tests.zoo import require_caffe_models
    require_caffe_models()
    zoo = load_model_zoo()
    lenet = zoo.row(zoo_net("lenet"))
    # conv1 20x24x24 outputs of 1x5x5 products, conv2 50x8x8 of 20x5x5, ip1 500 of 800, ip2 10 of 500.
    assert lenet["macs"] == 20 * 24 * 24 * 25 + 50 * 8 * 8 * 500 + 500 * 800 + 10 * 500 == 2_293_000
    assert lenet["params"] == (20 * 25 + 20) + (50 * 500 + 50) + (500 * 800 + 500) + (10 * 500 + 10)
    # Float32 blobs: data 784, conv1 11520, pool1 2880, conv2 3200, pool2 800, ip1 500 (relu1
    # in place), ip2 10, prob 10.
    assert lenet["activation_bytes"] == 4 * (784 + 11520 + 2880 + 3200 + 800 + 500 + 10 + 10)
    assert lenet["memory_bytes"] == lenet["activation_bytes"] + 4 * lenet["params"]
    assert (lenet["layers"], lenet["inputs"]) == (9, [(1, 1, 28, 28)])
    # The autoencoder's eight inner products: 784-1000-500-250-30-250-500-1000-784.
    sizes = [784, 1000, 500, 250, 30, 250, 500, 1000, 784]
    pairs = list(zip(sizes, sizes[1:]))
    auto = zoo.row(zoo_net("mnist_autoencoder"))
    assert auto["macs"] == sum(a * b for a, b in pairs) == 2_833_000
    assert auto["params"] == sum(a * b + b for a, b in pairs)


def test_the_autoencoder_reads_an_input_instead_of_its_data_layers():
    from tests.zoo import CAFFE_MODELS, require_caffe_models
    require_caffe_models()
    from minicaffe import protoio
    from minicaffe.testing.zoo import zoo_net as build_param
    original = protoio.read_net_param(CAFFE_MODELS / "examples/mnist/mnist_autoencoder.prototxt")
    param = build_param(zoo_net("mnist_autoencoder"))
    first, *rest = param.layer
    assert (first.type, list(first.top), list(first.input_param.shape[0].dim)) == ("Input", ["data"], [1, 1, 28, 28])
    assert rest == [layer for layer in original.layer if layer.type != "Data"]


def test_model_zoo_table_reads_the_measured_file(tmp_path):
    from tests.zoo import require_caffe_models
    require_caffe_models()
    zoo = load_model_zoo()
    timings = tmp_path / "timings.json"
    timings.write_text(json.dumps({
        "date": "2024-01-02", "command": "python benchmarks/zoo_table.py", "rounds": 3, "min_repeats": 3,
        "min_seconds": 6, "max_others": 0.2,
        "machine": {"cpu": "Test CPU", "cores": 2, "system": "Linux", "python": "3.11", "numpy": "2.0",
                    "blas": "openblas", "blas_threads": "default"},
        "nets": {"lenet": {"forward_ms_min": 0.291, "noisy_rounds": 0},
                 "resnet50": {"forward_ms_min": 166.56, "noisy_rounds": 1}}}))
    rows = {line.split("|")[1].strip(): line.split("|")[-2].strip()
            for line in zoo.table(timing_file=timings).splitlines() if line.startswith("| [")}
    assert rows["[LeNet](#lenet)"] == "0.29" and rows["[ResNet-50](#resnet50)"] == "167 †"
    assert rows["[GoogLeNet](#googlenet)"] == "not measured"
    assert "Test CPU, 2 cores" in zoo.table(timing_file=timings)


def test_model_zoo_page_without_the_definitions(tmp_path):
    zoo = load_model_zoo()
    missing = tmp_path / "nowhere"
    assert "were not at" in zoo.table(models=missing)
    drawings = zoo.drawings(models=missing)
    assert "No drawings" in drawings and "assets/generated" not in drawings and zoo.figures(models=missing) == {}


def test_the_committed_timings_cover_every_zoo_net():
    """benchmarks/zoo_table.py wrote docs/model_zoo_timings.json for the nets ZOO lists now."""
    from minicaffe.testing.zoo import ZOO
    record = json.loads((ROOT / "docs/model_zoo_timings.json").read_text())
    assert set(record["nets"]) == {net.key for net in ZOO}
    assert all(m["forward_ms_min"] > 0 for m in record["nets"].values())
    assert {"cpu", "cores", "numpy", "blas"} <= set(record["machine"])
