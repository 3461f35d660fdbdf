"""End to end: Caffe's own example nets train on the shipped MNIST digits.

The definitions are read unchanged from Caffe's `examples/` (`../shared/caffe_models`,
see tests/zoo.py); only what points outside the repository is redirected in the parsed
parameters: each Data layer's `source` (and, for the siamese net, `backend`: its
prototxt names a LevelDB, the pairs here are written to an LMDB), the snapshot prefix,
and the run lengths, which are cut to a few hundred iterations to keep CI fast.

* siamese (`examples/siamese`): two LeNet towers sharing every weight by `param { name }`,
  a Slice splitting 2-channel pair Datums, ContrastiveLoss. The pairs are written as
  Caffe's `convert_mnist_siamese_data` writes them.
* mnist_autoencoder (`examples/mnist`): a 784-1000-500-250-30 sparse-Gaussian autoencoder
  with a SigmoidCrossEntropyLoss and a Euclidean loss of weight 0, two test nets chosen
  by stage ("test-on-train", "test-on-test"), and two layers both named "loss".
"""
from pathlib import Path

import numpy as np
import pytest

from minicaffe import common
from minicaffe.io.db import LMDBReader
from minicaffe.common import MinicaffeError
from minicaffe.io.idx import read_images, read_labels, write_idx
from minicaffe.io.mnist import convert_mnist_data, convert_mnist_siamese_data
from minicaffe.net import Net
from minicaffe.proto import caffe_pb2
from minicaffe.protoio import read_net_param, read_solver_param
from minicaffe.solvers import get_solver
from tests.zoo import CAFFE_MODELS, require_caffe_models

REPO = Path(__file__).resolve().parents[1]
MNIST = next((d for d in (REPO / "data" / "mnist", REPO.parent / "shared" / "data" / "mnist")
              if (d / "t10k-images-idx3-ubyte.gz").is_file()), REPO / "data" / "mnist")
TRAIN = (MNIST / "train-10k-images-idx3-ubyte.gz", MNIST / "train-10k-labels-idx1-ubyte.gz")
TEST = (MNIST / "t10k-images-idx3-ubyte.gz", MNIST / "t10k-labels-idx1-ubyte.gz")
EXAMPLES = CAFFE_MODELS / "examples"


def example_solver(solver_file: str, sources: dict[str, Path], tmp_path: Path, **overrides):
    """Caffe's solver with its net inlined, Data sources redirected by their original
    path (`sources`: Caffe's path -> ours, as LMDB), and the run shortened."""
    require_caffe_models()
    param = read_solver_param(EXAMPLES / solver_file)
    net = read_net_param(CAFFE_MODELS / param.net)  # the solver names it from Caffe's root
    for layer in net.layer:
        if layer.type == "Data":
            layer.data_param.source = str(sources[layer.data_param.source])
            layer.data_param.backend = caffe_pb2.DataParameter.LMDB
    param.ClearField("net")
    param.net_param.CopyFrom(net)
    param.snapshot_prefix = str(tmp_path / "snap")
    param.solver_mode = param.CPU
    param.random_seed = 1
    param.display = 0
    param.snapshot = 0
    param.snapshot_after_train = False
    param.test_interval = 10 ** 6  # the test tests the nets itself, before and after
    param.test_initialization = False
    for field, value in overrides.items():
        if field == "test_iter":
            param.test_iter[:] = value
        else:
            setattr(param, field, value)
    return get_solver(param)


def train(solver, iters: int, output: str) -> np.ndarray:
    """Step `iters` times; return the train net's `output` after each update's forward."""
    values = []
    for _ in range(iters):
        solver.step(1)
        values.append(float(solver.net.blobs[output].cpu_data()))
    return np.array(values)


def held_out_scores(solver) -> list[list[float]]:
    """Run every test net as Solver.test does, from each one's first batch."""
    for net in solver.test_nets:
        for layer in net.data_layers():
            layer.set_batch_index(0)
    solver.test_all()
    return [list(solver.mean_scores[i]) for i in range(len(solver.test_nets))]


# ---------------------------------------------------------------- siamese

@pytest.fixture(scope="module")
def pair_dbs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("siamese")
    train_db, test_db = folder / "mnist_siamese_train_lmdb", folder / "mnist_siamese_test_lmdb"
    convert_mnist_siamese_data(*TRAIN, train_db, seed=1)
    convert_mnist_siamese_data(*TEST, test_db, seed=2, limit=1000)
    return {"examples/siamese/mnist_siamese_train_leveldb": train_db,
            "examples/siamese/mnist_siamese_test_leveldb": test_db}


def test_pair_database_holds_two_digits_and_whether_they_match(pair_dbs):
    """Each record is two MNIST digits as the channels of one Datum, labelled 1 exactly when
    their digits agree (convert_mnist_siamese_data.cpp's layout)."""
    images, labels = read_images(TEST[0]), read_labels(TEST[1])
    digits_of = {}
    for image, label in zip(images, labels):
        digits_of.setdefault(image.tobytes(), set()).add(int(label))
    reader = LMDBReader(pair_dbs["examples/siamese/mnist_siamese_test_leveldb"])
    assert len(reader) == 1000
    similar = 0
    for k in range(len(reader)):
        key, value = reader.read(k)
        assert key == f"{k:08d}".encode()
        datum = caffe_pb2.Datum.FromString(value)
        assert (datum.channels, datum.height, datum.width) == (2, 28, 28)
        first, second = datum.data[:784], datum.data[784:]
        a, b = digits_of[first], digits_of[second]  # KeyError: not an MNIST digit
        if len(a) == len(b) == 1:
            assert datum.label == int(a == b)
        similar += datum.label
    reader.close()
    assert 60 <= similar <= 150  # one pair in ten matches when digits are drawn at random


def test_pair_database_errors(tmp_path):
    with pytest.raises(MinicaffeError, match="incorrect image file magic"):
        convert_mnist_siamese_data(TEST[1], TEST[0], tmp_path / "a")
    write_idx(tmp_path / "few-labels", read_labels(TEST[1])[:9])
    with pytest.raises(MinicaffeError, match="10000 images but .*few-labels holds 9 labels"):
        convert_mnist_siamese_data(TEST[0], tmp_path / "few-labels", tmp_path / "b")
    assert not any((tmp_path / n).exists() for n in "ab")
    convert_mnist_siamese_data(*TEST, tmp_path / "c", limit=3)
    with pytest.raises(MinicaffeError, match="already exists; refusing to overwrite"):
        convert_mnist_siamese_data(*TEST, tmp_path / "c", limit=3)


def test_siamese_example_learns_an_embedding(pair_dbs, tmp_path):
    solver = example_solver("siamese/mnist_siamese_solver.prototxt", pair_dbs, tmp_path, test_iter=[5])
    net = solver.net
    # The towers share every weight: 10 learnable blobs, not 20, one memory for both towers.
    assert len(net.learnable_params) == 10
    for layer in ("conv1", "conv2", "ip1", "ip2", "feat"):
        for mine, twin in zip(net.params[layer], net.params[layer + "_p"]):
            assert np.shares_memory(mine.cpu_data(), twin.cpu_data())
    held_out_before = held_out_scores(solver)[0][0]

    losses = train(solver, 200, "loss")
    assert np.isfinite(losses).all()
    assert losses[-25:].mean() < 0.6 * losses[:25].mean()
    held_out_after = held_out_scores(solver)[0][0]
    assert held_out_after < 0.5 * held_out_before  # on pairs of the 10k test digits

    # Caffe's deploy net (one tower) embeds unseen digits: same-digit pairs end up closer
    # than different-digit ones.
    deploy = read_net_param(EXAMPLES / "siamese" / "mnist_siamese.prototxt")
    deploy.layer[0].input_param.shape[0].dim[0] = 500
    tower = Net(deploy, caffe_pb2.TEST)
    tower.copy_trained_layers_from(net.to_proto())
    images, labels = read_images(TEST[0])[-500:], read_labels(TEST[1])[-500:]
    tower.blobs["data"].data[...] = images[:, None] * 0.00390625  # the example's scale
    features = tower.forward()["feat"]
    distance = np.linalg.norm(features[:, None] - features[None], axis=-1)
    same = labels[:, None] == labels[None]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    assert distance[same & off_diagonal].mean() < 0.6 * distance[~same].mean()


# ---------------------------------------------------------------- mnist_autoencoder

@pytest.fixture(scope="module")
def digit_dbs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("autoencoder")
    train_db, test_db = folder / "mnist_train_lmdb", folder / "mnist_test_lmdb"
    convert_mnist_data(*TRAIN, train_db, limit=2000, progress=False)
    convert_mnist_data(*TEST, test_db, limit=500, progress=False)
    return {"examples/mnist/mnist_train_lmdb": train_db, "examples/mnist/mnist_test_lmdb": test_db}


def test_autoencoder_example_learns_to_reconstruct(digit_dbs, tmp_path):
    solver = example_solver("mnist/mnist_autoencoder_solver.prototxt", digit_dbs, tmp_path, test_iter=[3, 3])
    net = solver.net
    assert [n for n in net.layer_names if n == "loss"] == ["loss", "loss"]
    # The stages pick one Data layer per test net: training digits, then test digits.
    sources = [test_net.layer_dict["data"].layer_param.data_param.source for test_net in solver.test_nets]
    assert sources == [str(digit_dbs["examples/mnist/mnist_train_lmdb"]),
                       str(digit_dbs["examples/mnist/mnist_test_lmdb"])]
    before = held_out_scores(solver)

    losses = train(solver, 200, "cross_entropy_loss")
    assert np.isfinite(losses).all()
    assert losses[-20:].mean() < 0.8 * losses[:20].mean()
    after = held_out_scores(solver)
    for (entropy_0, l2_0), (entropy_1, l2_1) in zip(before, after):  # both test nets
        assert entropy_1 < 0.5 * entropy_0 and l2_1 < 0.5 * l2_0

    # The two losses are what the example says, recomputed from the net's own blobs:
    # cross entropy of sigmoid(decode1) against the pixels, and the Euclidean error of
    # sigmoid(decode1), which has loss_weight 0 and so adds nothing to the loss.
    loss = net.forward_loss()
    x = net.blobs["decode1"].cpu_data().astype(np.float64)
    target = net.blobs["flatdata"].cpu_data().astype(np.float64)
    batch = len(x)
    entropy = np.sum(np.maximum(x, 0) - x * target + np.log1p(np.exp(-np.abs(x)))) / batch
    l2 = np.sum((1 / (1 + np.exp(-x)) - target) ** 2) / 2 / batch
    assert float(net.blobs["cross_entropy_loss"].cpu_data()) == pytest.approx(entropy, rel=1e-4)
    assert float(net.blobs["l2_error"].cpu_data()) == pytest.approx(l2, rel=1e-4)
    assert loss == pytest.approx(entropy, rel=1e-4)


# ---------------------------------------------------------------- both engines

@pytest.mark.opencl
@pytest.mark.parametrize("solver_file, output, test_nets", [("siamese/mnist_siamese_solver.prototxt", "loss", 1),
                                                            ("mnist/mnist_autoencoder_solver.prototxt", "cross_entropy_loss", 2)])
def test_examples_train_alike_on_both_engines(solver_file, output, test_nets, pair_dbs, digit_dbs, tmp_path):
    """The same seed gives the same weights, batches and so losses on the OpenCL engine as
    on numpy, update after update."""
    losses = {}
    for mode in (common.CPU, common.GPU):
        with common.using_mode(mode):  # the script picks the engine; the solver keeps it
            solver = example_solver(solver_file, {**pair_dbs, **digit_dbs}, tmp_path / mode, test_iter=[1] * test_nets,
                                    solver_mode=caffe_pb2.SolverParameter.GPU if mode == common.GPU
                                    else caffe_pb2.SolverParameter.CPU)
            assert common.mode() == mode
            losses[mode] = train(solver, 5, output)
    np.testing.assert_allclose(losses[common.GPU], losses[common.CPU], rtol=1e-3)
