"""Acceptance: ImageData trains Caffe's LeNet from a folder of PNG files written from the
shipped MNIST digits, to the same accuracy as the Data layer reading the same digits from
an LMDB.

PNG is lossless and the list keeps the LMDB's order, so the two runs see the very same
batches: with the same seed they must end with identical weights, not merely similar
accuracy. `-m slow` adds the 2,000-iteration run on all 10k training digits, which must
reach LeNet's acceptance accuracy (97.5% on the official 10k test set).
"""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minicaffe.io.idx import read_images, read_labels
from minicaffe.io.mnist import convert_mnist_data
from minicaffe.protoio import read_net_param, read_solver_param
from minicaffe.solvers import get_solver

ROOT = Path(__file__).resolve().parents[1]
DATA = next((d for d in (ROOT / "data" / "mnist", ROOT.parent / "shared" / "data" / "mnist")
             if (d / "t10k-images-idx3-ubyte.gz").is_file()), ROOT / "data" / "mnist")
SETS = {"train": ("train-10k-images-idx3-ubyte.gz", "train-10k-labels-idx1-ubyte.gz"),
        "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def write_pngs(folder: Path, name: str, limit: int | None) -> Path:
    """The digits of one MNIST set as folder/name/NNNNN.png, and folder/name.txt listing them."""
    images, labels = (f(DATA / file) for f, file in zip((read_images, read_labels), SETS[name]))
    (folder / name).mkdir(parents=True)
    lines = []
    for i, (image, label) in enumerate(zip(images[:limit], labels[:limit])):
        Image.fromarray(image).save(folder / name / f"{i:05d}.png")
        lines.append(f"{name}/{i:05d}.png {label}")
    (folder / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return folder / f"{name}.txt"


def sources(folder: Path, limits: dict) -> dict:
    """For train and test: the PNG list file and an LMDB of the same digits."""
    out = {}
    for name, limit in limits.items():
        db = folder / f"mnist_{name}_lmdb"
        convert_mnist_data(*(DATA / f for f in SETS[name]), db, limit=limit, progress=False)
        out[name] = (write_pngs(folder, name, limit), db)
    return out


def lenet_solver(srcs, folder: Path, images: bool, **overrides):
    """examples/mnist/lenet_solver.prototxt; with `images`, its Data layers become ImageData."""
    param = read_solver_param(ROOT / "examples/mnist/lenet_solver.prototxt")
    net = read_net_param(ROOT / param.net)
    for layer in net.layer:
        if layer.type != "Data":
            continue
        name = "train" if layer.include[0].phase == 0 else "test"
        list_file, db = srcs[name]
        if images:
            layer.type = "ImageData"
            layer.image_data_param.source = str(list_file)
            layer.image_data_param.root_folder = f"{list_file.parent}/"
            layer.image_data_param.batch_size = layer.data_param.batch_size
            layer.image_data_param.is_color = False
            layer.ClearField("data_param")
        else:
            layer.data_param.source = str(db)
    param.ClearField("net")
    param.net_param.CopyFrom(net)
    param.snapshot_prefix = str(folder / ("images" if images else "lmdb"))
    param.solver_mode = param.CPU
    param.random_seed = 1
    param.display = 0
    param.test_interval = 10**6
    param.test_initialization = False
    param.snapshot = 0
    param.snapshot_after_train = False
    for field, value in overrides.items():
        if field == "test_iter":
            param.test_iter[:] = [value]
        else:
            setattr(param, field, value)
    return param


def final_accuracy(solver) -> float:
    net = solver.test_nets[0]
    net.share_trained_layers_with(solver.net)
    for layer in net.data_layers():
        layer.set_batch_index(0)
    scores = []
    for _ in range(solver.param.test_iter[0]):
        net.forward_loss()
        scores.append(float(net.blobs["accuracy"].cpu_data()))
    return float(np.mean(scores))


def test_imagedata_lenet_equals_lmdb_lenet(tmp_path):
    srcs = sources(tmp_path, {"train": 1000, "test": 300})
    solvers = {}
    for images in (False, True):
        solver = get_solver(lenet_solver(srcs, tmp_path, images, max_iter=40, test_iter=3))
        solver.solve()
        solvers[images] = solver
    assert [l.type for l in solvers[True].net.layers][0] == "ImageData"
    for name, blobs in solvers[False].net.params.items():
        for a, b in zip(blobs, solvers[True].net.params[name]):
            np.testing.assert_array_equal(b.cpu_data(), a.cpu_data(), err_msg=name)
    accuracy = {images: final_accuracy(s) for images, s in solvers.items()}
    print(f"LeNet, 40 iterations, PNG files vs LMDB: test accuracy {accuracy}")
    assert accuracy[True] == accuracy[False] >= 0.7


@pytest.mark.slow
def test_imagedata_lenet_reaches_acceptance_accuracy_at_2000_iterations(tmp_path):
    srcs = sources(tmp_path, {"train": None, "test": None})
    solver = get_solver(lenet_solver(srcs, tmp_path, True, max_iter=2000))
    solver.solve()
    accuracy = final_accuracy(solver)
    print(f"LeNet from PNG files, 2000 iterations: test accuracy {accuracy:.4f}")
    assert accuracy >= 0.975
