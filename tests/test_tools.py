"""The draw, plot and summary tools (minicaffe/tools/), run through their argparse verbs."""
import argparse
import shutil
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from minicaffe import protoio
from minicaffe.common import MinicaffeError
from minicaffe.net import TEST, Net
from minicaffe.tools import draw, plot, summary

ROOT = Path(__file__).resolve().parent.parent
LENET = ROOT / "examples/mnist/lenet.prototxt"
LENET_TRAIN_TEST = ROOT / "examples/mnist/lenet_train_test.prototxt"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")

# A real training log (the start of docs/assets/lenet_train.log, as `minicaffe train` wrote it).
LOG = """\
I1129 17:32:10.656725 12194 solver.py:540] Iteration 0, Testing net (#0)
I1129 17:32:18.338098 12194 solver.py:576]     Test net output #0: accuracy = 0.1298
I1129 17:32:18.338220 12194 solver.py:576]     Test net output #1: loss = 2.33993 (* 1 = 2.33993 loss)
I1129 17:32:18.410000 12194 solver.py:461] Iteration 0 (0 iter/s, 7.75s/20 iters), loss = 2.37617
I1129 17:32:18.410100 12194 solver.py:576]     Train net output #0: loss = 2.37617 (* 1 = 2.37617 loss)
I1129 17:32:18.410200 12194 sgd.py:75] Iteration 0, lr = 0.01
I1129 17:32:22.183621 12194 solver.py:461] Iteration 20 (8.6 iter/s, 2.3s/20 iters), loss = 0.723715
I1129 17:32:22.183661 12194 sgd.py:75] Iteration 20, lr = 0.00998503
I1129 17:32:36.005953 12194 solver.py:540] Iteration 100, Testing net (#0)
I1129 17:32:47.447522 12194 solver.py:576]     Test net output #0: accuracy = 0.8994
I1129 17:32:47.447656 12194 solver.py:576]     Test net output #1: loss = 0.302869 (* 1 = 0.302869 loss)
"""


def run_verb(module, *argv) -> int:
    """Build a parser holding only `module`'s verb, as cli.build_parser registers it."""
    parser = argparse.ArgumentParser(prog="minicaffe")
    verbs = parser.add_subparsers(dest="command", required=True)
    module.register(verbs)
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


# ---------------------------------------------------------------- draw

@needs_dot
def test_draw_writes_an_svg_naming_every_layer(tmp_path):
    out = tmp_path / "lenet.svg"
    assert run_verb(draw, "draw", LENET_TRAIN_TEST, out, "--rankdir", "TB") == 0
    root = ET.parse(out).getroot()  # valid XML
    assert root.tag.endswith("svg")
    texts = {t.text for t in root.iter() if t.tag.endswith("text") and t.text}
    for layer in protoio.read_net_param(LENET_TRAIN_TEST).layer:
        assert layer.name in texts, layer.name
    assert "(Convolution)" in texts and "mnist_train_lmdb" not in texts


@needs_dot
def test_draw_phase_keeps_that_phase_layers(tmp_path):
    def layer_names(phase):
        out = tmp_path / f"{phase}.svg"
        run_verb(draw, "draw", LENET_TRAIN_TEST, out, "--phase", phase)
        return {t.text for t in ET.parse(out).getroot().iter() if t.tag.endswith("text")}
    train, test = layer_names("TRAIN"), layer_names("TEST")
    assert "accuracy" not in train and "(Accuracy)" in test


@needs_dot
def test_draw_png_by_extension(tmp_path):
    out = tmp_path / "lenet.png"
    run_verb(draw, "draw", LENET, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_draw_without_dot_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot here
    with pytest.raises(MinicaffeError, match="Graphviz.*apt-get install graphviz"):
        draw.draw_net(LENET, tmp_path / "x.svg")


def test_draw_dot_source_needs_no_graphviz(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    text = draw.draw_net(LENET, tmp_path / "x.dot").read_text()
    assert text.startswith("digraph") and "conv1" in text and "->" in text


# ---------------------------------------------------------------- plot

def test_parse_log_reads_caffe_lines(tmp_path):
    (tmp_path / "train.log").write_text(LOG)
    curves = plot.parse_log(tmp_path / "train.log")
    assert curves["train_loss"] == [(0, 2.37617), (20, 0.723715)]
    assert curves["lr"] == [(0, 0.01), (20, 0.00998503)]
    assert curves["test"][(0, "accuracy")] == [(0, 0.1298), (100, 0.8994)]
    assert curves["test"][(0, "loss")] == [(0, 2.33993), (100, 0.302869)]


def test_plot_writes_a_png(tmp_path):
    (tmp_path / "train.log").write_text(LOG)
    out = tmp_path / "curves.png"
    assert run_verb(plot, "plot", tmp_path / "train.log", out, "--what", "loss,accuracy,lr") == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 400 and height >= 600  # three panels stacked


def test_plot_of_the_committed_training_log(tmp_path):
    curves = plot.parse_log(ROOT / "docs/assets/lenet_train.log")
    accuracy = [v for _, v in curves["test"][(0, "accuracy")]]
    assert len(curves["train_loss"]) >= 20 and accuracy[-1] > 0.9 > accuracy[0]


def test_plot_rejects_a_log_without_iterations(tmp_path):
    (tmp_path / "empty.log").write_text("I1129 17:32:10.553668 12194 cli.py:86] Use CPU.\n")
    with pytest.raises(MinicaffeError, match="found no training iterations"):
        plot.plot_log(tmp_path / "empty.log", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_plot_rejects_unknown_panels(tmp_path):
    (tmp_path / "train.log").write_text(LOG)
    with pytest.raises(MinicaffeError, match="--what"):
        run_verb(plot, "plot", tmp_path / "train.log", tmp_path / "x.png", "--what", "loss,speed")


# ---------------------------------------------------------------- summary

def test_summary_parameters_equal_the_blob_counts_of_lenet():
    result = summary.summarize(LENET, "TEST")
    net = Net(str(LENET), TEST)
    blob_total = sum(b.count for blobs in net.params.values() for b in blobs)
    assert result["totals"]["params"] == blob_total == 431_080
    assert [r["params"] for r in result["rows"] if r["params"]] == [520, 25_050, 400_500, 5_010]


def test_summary_flops_of_conv1_by_hand():
    rows = {r["layer"]: r for r in summary.summarize(LENET, "TEST")["rows"]}
    # 64 images x 20 maps x 24 x 24 outputs, each a 1 x 5 x 5 dot product: 2 FLOPs per multiply-add.
    assert rows["conv1"]["flops"] == 2 * 64 * 20 * 24 * 24 * (1 * 5 * 5) == 36_864_000
    # ip1: 64 x 500 outputs, each a dot product of length 50 x 4 x 4 = 800.
    assert rows["ip1"]["flops"] == 2 * 64 * 500 * 800
    assert rows["conv1"]["top_shapes"] == [(64, 20, 24, 24)]
    assert rows["conv1"]["activation_bytes"] == 4 * 64 * 20 * 24 * 24
    assert rows["relu1"]["activation_bytes"] == 0  # in place


def test_summary_counts_shared_parameters_once(tmp_path):
    model = tmp_path / "shared.prototxt"
    model.write_text("""
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "a" type: "InnerProduct" bottom: "data" top: "a"
        param { name: "w" } param { name: "b" } inner_product_param { num_output: 3 } }
layer { name: "b" type: "InnerProduct" bottom: "a" top: "b"
        param { name: "w" } param { name: "b" } inner_product_param { num_output: 3 } }
""")
    rows = summary.summarize(model, "TEST")["rows"]
    assert [r["params"] for r in rows] == [0, 12, 0]


def test_summary_verb_prints_a_table(capsys):
    assert run_verb(summary, "summary", "--model", LENET, "--phase", "TEST") == 0
    out = capsys.readouterr().out
    assert "conv1" in out and "431,080" in out and "36,864,000" in out


def test_summary_needs_a_model():
    with pytest.raises(MinicaffeError, match="--model"):
        run_verb(summary, "summary")


# ---------------------------------------------------------------- optional libraries
@pytest.mark.parametrize("verb, module, argv", [
    ("draw", "pydot", [str(LENET), "net.svg"]),
    ("plot", "matplotlib", ["train.log", "curves.png"]),
])
def test_a_missing_optional_library_is_one_line_naming_what_to_install(tmp_path, monkeypatch, capsys,
                                                                       verb, module, argv):
    from minicaffe import cli
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.log").write_text(LOG)
    monkeypatch.setitem(__import__("sys").modules, module, None)  # makes `import module` fail
    assert cli.main([verb, *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"minicaffe: error: `minicaffe {verb}` needs {module}, which is not installed: "
                   f"pip install {module} (or pip install 'minicaffe[docs]')")


def test_summary_flops_of_a_deconvolution_by_hand(tmp_path):
    # 3 channels of 4x4 upsampled by a 2x2 stride-2 deconvolution to 5 channels of 8x8:
    # each of the 48 bottom values meets 5 x 2 x 2 weights, a multiply-add each.
    path = tmp_path / "deconv.prototxt"
    path.write_text('layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }\n'
                    'layer { name: "up" type: "Deconvolution" bottom: "x" top: "up"\n'
                    '  convolution_param { num_output: 5 kernel_size: 2 stride: 2 } }\n')
    rows = {r["layer"]: r for r in summary.summarize(str(path), "TEST")["rows"]}
    assert rows["up"]["flops"] == 2 * 48 * 5 * 2 * 2


def test_summary_counts_no_memory_for_tops_that_share_their_bottoms_data(tmp_path):
    # `data` feeds two layers, so building inserts a Split whose two tops share its data;
    # Flatten's top shares its bottom's data too. New memory: data (6), a (8), b (8).
    model = tmp_path / "split.prototxt"
    model.write_text("""
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "a" type: "InnerProduct" bottom: "data" top: "a" inner_product_param { num_output: 4 } }
layer { name: "b" type: "InnerProduct" bottom: "data" top: "b" inner_product_param { num_output: 4 } }
layer { name: "flat" type: "Flatten" bottom: "b" top: "flat" }
""")
    result = summary.summarize(model, "TEST")
    rows = {r["layer"]: r for r in result["rows"]}
    split = next(r for r in result["rows"] if r["type"] == "Split")
    assert split["activation_bytes"] == 0 and rows["flat"]["activation_bytes"] == 0
    assert result["totals"]["activation_bytes"] == 4 * (6 + 8 + 8)


# ---------------------------------------------------------------- every model-zoo net

def zoo_file(entry, tmp_path) -> Path:
    """The zoo net as the docs' model-zoo page shows it (batch 1), written as a prototxt."""
    from google.protobuf import text_format

    from minicaffe.testing.zoo import zoo_net
    path = tmp_path / f"{entry.key}.prototxt"
    path.write_text(text_format.MessageToString(zoo_net(entry)))
    return path


def zoo_entries():
    from minicaffe.testing.zoo import ZOO
    return ZOO


@pytest.mark.parametrize("entry", zoo_entries(), ids=lambda e: e.key)
def test_summary_and_draw_on_every_zoo_net(tmp_path, capsys, entry):
    from minicaffe import cli
    from tests.zoo import require_caffe_models
    require_caffe_models()
    model = zoo_file(entry, tmp_path)
    param = protoio.read_net_param(model)
    # The deprecated net-level `input` fields (ResNet, SqueezeNet 1.0) build as a layer "input".
    layers = ["input"] * bool(param.input) + [layer.name for layer in param.layer]
    assert cli.main(["summary", "--model", str(model), "--phase", "TEST"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == f"Net {param.name!r}, phase TEST"
    assert [line.split()[0] for line in table[3:-2] if "Split" not in line.split()[1]] == layers
    assert cli.main(["draw", str(model), str(tmp_path / "net.dot"), "--phase", "TEST"]) == 0
    source = (tmp_path / "net.dot").read_text()
    assert source.count("shape=record") == len(layers)  # one box per layer


@pytest.mark.parametrize("key", ["lenet", "cifar10_quick"])
def test_time_on_small_zoo_nets(tmp_path, caplog, key):
    import logging

    from minicaffe import cli
    from tests.zoo import require_caffe_models
    require_caffe_models()
    entry = next(e for e in zoo_entries() if e.key == key)
    with caplog.at_level(logging.INFO, logger="minicaffe"):
        assert cli.main(["time", "--model", str(zoo_file(entry, tmp_path)), "--iterations", "2"]) == 0
    assert "Average Forward pass" in caplog.text and "Testing for 2 iterations." in caplog.text
