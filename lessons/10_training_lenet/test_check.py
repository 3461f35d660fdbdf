"""Lesson 10 check: 100 iterations of LeNet on real MNIST digits must learn something."""
import numpy as np
import pytest

from minicaffe import common
from minicaffe.io.idx import read_images, read_labels
from minicaffe.protoio import read_solver_param
from minicaffe.solvers import get_solver

pytestmark = pytest.mark.lesson10

ITERATIONS = 100


def load(folder, images, labels, count):
    x = read_images(folder / images)[:count].astype(np.float32) * np.float32(1 / 256)
    return x[:, None], read_labels(folder / labels)[:count].astype(np.int64)


@pytest.fixture(scope="module")
def data(lesson_dir):
    mnist = lesson_dir.parents[1] / "data" / "mnist"
    return (load(mnist, "train-10k-images-idx3-ubyte.gz", "train-10k-labels-idx1-ubyte.gz", 6400),
            load(mnist, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 1024))


@pytest.fixture(scope="module")
def trained(lesson, lesson_dir, data):
    param = read_solver_param(lesson_dir / "lenet_solver.prototxt")
    param.net = str(lesson_dir / param.net)
    with common.using_mode(common.CPU):
        solver = get_solver(param)
        losses = lesson.train(solver, *data[0], ITERATIONS)
    return solver, losses


def reference_accuracy(net, images, labels):
    batch = net.blobs["data"].shape[0]
    right = 0
    for start in range(0, len(images), batch):
        net.blobs["data"].data[...] = images[start:start + batch]
        net.blobs["label"].data[...] = labels[start:start + batch]
        net.forward_loss()
        right += int(np.sum(net.blobs["ip2"].data.argmax(axis=1) == labels[start:start + batch]))
    return right / len(images)


def test_training_lowers_the_loss(trained):
    solver, losses = trained
    assert len(losses) == ITERATIONS and solver.iter == ITERATIONS
    assert np.all(np.isfinite(losses))
    assert losses[0] > 2.0, "the first loss should be about log(10) = 2.3"
    assert np.mean(losses[-10:]) < 0.7, f"loss {losses[0]:.3f} -> {np.mean(losses[-10:]):.3f}"


def test_accuracy_on_unseen_digits(lesson, trained, data):
    solver, _ = trained
    test_x, test_y = data[1]
    reference = reference_accuracy(solver.net, test_x, test_y)
    assert reference > 0.80, f"test accuracy {reference:.3f} after {ITERATIONS} iterations"
    assert lesson.accuracy(solver.net, test_x, test_y) == pytest.approx(reference, abs=1e-9)


def test_accuracy_counts_right_answers(lesson, trained, data):
    solver, _ = trained
    test_x, test_y = data[1]
    wrong_labels = (test_y + 1) % 10  # every label wrong: far fewer matches
    assert lesson.accuracy(solver.net, test_x, wrong_labels) == pytest.approx(
        reference_accuracy(solver.net, test_x, wrong_labels), abs=1e-9)
