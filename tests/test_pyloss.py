"""Acceptance: a Euclidean loss written in Python (examples/pycaffe/layers/pyloss.py, the
shape of pycaffe's pyloss example) trains a net to the same loss as the built-in
EuclideanLoss.

The net is a small autoencoder on the shipped MNIST digits: 784 pixels -> 64 -> ReLU ->
784, with the loss between the reconstruction and the image. Both nets start from the
same seed and see the same batches, so every iteration's loss must agree to float32
rounding, and the loss must fall.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from minicaffe.io.idx import read_images
from minicaffe.layer import layer_registry
from minicaffe.proto import caffe_pb2
from minicaffe.solvers import get_solver
from tests.zoo import CAFFE_MODELS, require_caffe_models

ROOT = Path(__file__).resolve().parents[1]
PYLOSS_DIR = ROOT / "examples" / "pycaffe" / "layers"
BATCH, ITERS = 16, 30

NET = """
name: "autoencoder"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: %d dim: 1 dim: 28 dim: 28 } } }
layer { name: "encode" type: "InnerProduct" bottom: "data" top: "encode"
        inner_product_param { num_output: 64 weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "encode" top: "encode" }
layer { name: "decode" type: "InnerProduct" bottom: "encode" top: "decode"
        inner_product_param { num_output: 784 weight_filler { type: "xavier" } } }
""" % BATCH

BUILT_IN = """layer { name: "loss" type: "EuclideanLoss" bottom: "decode" bottom: "data"
        top: "loss" }"""
PYTHON = """layer { name: "loss" type: "Python" bottom: "decode" bottom: "data" top: "loss"
        python_param { module: "pyloss" layer: "EuclideanLossLayer" } loss_weight: 1 }"""


@pytest.fixture(scope="module")
def digits():
    images = read_images(ROOT / "data" / "mnist" / "train-10k-images-idx3-ubyte.gz")
    return images[: BATCH * ITERS].reshape(-1, 1, 28, 28).astype(np.float32) / 256


def train(loss_layer: str, digits, mode) -> list[float]:
    param = caffe_pb2.SolverParameter(base_lr=0.05, momentum=0.9, lr_policy="fixed",
                                      max_iter=ITERS, random_seed=7, display=0, snapshot_prefix="x")
    param.solver_mode = param.GPU if mode == "gpu" else param.CPU
    text_format.Parse(NET + loss_layer, param.net_param)
    solver = get_solver(param)
    losses = []
    for i in range(ITERS):
        solver.net.blobs["data"].data[...] = digits[i * BATCH:(i + 1) * BATCH]
        solver.step(1)
        # this batch's loss, before the update (the built-in top is a scalar, the Python one (1,))
        losses.append(float(solver.net.blobs["loss"].data.reshape(-1)[0]))
    return losses


def test_python_euclidean_loss_trains_like_the_built_in(mode, digits, monkeypatch):
    monkeypatch.syspath_prepend(str(PYLOSS_DIR))
    built_in = train(BUILT_IN, digits, mode)
    python = train(PYTHON, digits, mode)
    np.testing.assert_allclose(python, built_in, rtol=1e-4)
    # It learns: the last ten batches' mean loss is well under the first batch's (65 -> about 27).
    assert np.mean(python[-10:]) < 0.6 * python[0]


def test_the_cli_finds_the_module_on_pythonpath(tmp_path):
    # `minicaffe time` on the net: the module comes from $PYTHONPATH, as in Caffe; without
    # it the one-line error names the layer, module and class.
    model = tmp_path / "net.prototxt"
    model.write_text(NET + PYTHON)
    env = {"PYTHONPATH": f"{ROOT}"}
    cmd = [sys.executable, "-m", "minicaffe", "time", f"--model={model}", "--iterations=1"]
    missing = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert missing.returncode == 1
    last = missing.stderr.strip().splitlines()[-1]
    assert last.startswith("minicaffe: error: ") and (
        "net.prototxt: Python layer 'loss' (pyloss.EuclideanLossLayer): cannot import module "
        "'pyloss' (ModuleNotFoundError") in last
    assert "Traceback" not in missing.stderr
    env["PYTHONPATH"] += f":{PYLOSS_DIR}"
    found = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr


@pytest.mark.skipif("DummyData" not in layer_registry(), reason="needs the DummyData layer")
def test_caffes_linreg_example_matches_the_built_in_loss(monkeypatch):
    # Caffe's own examples/pycaffe/linreg.prototxt (DummyData inputs, the Python loss),
    # against the same net with the built-in EuclideanLoss in its place.
    require_caffe_models()
    monkeypatch.syspath_prepend(str(PYLOSS_DIR))
    path = CAFFE_MODELS / "examples" / "pycaffe" / "linreg.prototxt"
    losses = {}
    for kind in ("Python", "EuclideanLoss"):
        param = caffe_pb2.SolverParameter(base_lr=0.01, lr_policy="fixed", max_iter=20,
                                          random_seed=3, display=0, snapshot_prefix="x")
        text_format.Parse(path.read_text(), param.net_param)
        loss = [layer for layer in param.net_param.layer if layer.name == "loss"][0]
        loss.type = kind
        solver = get_solver(param)
        solver.step(20)
        losses[kind] = solver.losses
    np.testing.assert_allclose(losses["Python"], losses["EuclideanLoss"], rtol=1e-4)
