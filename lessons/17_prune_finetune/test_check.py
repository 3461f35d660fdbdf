"""Lesson 17 check: magnitude masks (exact counts, ties, one global threshold) against
minicaffe.pruning; the masked SGD step by hand; a masked fine-tune that matches
minicaffe's SGDSolver with `pruning.attach`, update for update, on real MNIST digits; and
a pruned MLP that fine-tuning brings most of the way back."""
import numpy as np
import pytest

from minicaffe import common, pruning
from minicaffe.io.idx import read_images, read_labels
from minicaffe.proto import caffe_pb2
from minicaffe.protoio import read_net_param
from minicaffe.solvers import get_solver

pytestmark = pytest.mark.lesson17

SOLVER = dict(momentum=0.9, weight_decay=0.0005, display=0, max_iter=10000, snapshot=0, random_seed=1)
SPARSITY = 0.9
DENSE_ITERATIONS = 600   # about 1 s; 89.8% of the 1000 test digits
TUNE_ITERATIONS = 150    # the solution: 68.4% right after pruning, 88.5% after fine-tuning


@pytest.fixture(autouse=True)
def cpu():
    with common.using_mode(common.CPU):
        yield


def load(mnist, kind: str, count: int):
    prefix = "train-10k" if kind == "train" else "t10k"
    pixels = read_images(mnist / f"{prefix}-images-idx3-ubyte.gz")[:count]
    labels = read_labels(mnist / f"{prefix}-labels-idx1-ubyte.gz")[:count]
    return (np.ascontiguousarray(pixels[:, None].astype(np.float32) * np.float32(1 / 256)),
            labels.astype(np.float32))


@pytest.fixture(scope="module")
def digits(lesson_dir):
    mnist = lesson_dir.parents[1] / "data" / "mnist"
    return load(mnist, "train", 6400), load(mnist, "test", 1000)


def make_solver(lesson_dir, **fields):
    param = caffe_pb2.SolverParameter(**{**SOLVER, **fields})
    param.net_param.CopyFrom(read_net_param(lesson_dir / "mlp.prototxt"))
    return get_solver(param)


def feed(net, images, labels, t):
    batch = net.blobs["data"].shape[0]
    index = (t * batch + np.arange(batch)) % len(images)
    net.blobs["data"].data[...] = images[index]
    net.blobs["label"].data[...] = labels[index]


def accuracy(net, images, labels) -> float:
    batch, correct = net.blobs["data"].shape[0], 0
    for start in range(0, len(images), batch):
        x = np.zeros(net.blobs["data"].shape, np.float32)
        n = len(images[start:start + batch])
        x[:n] = images[start:start + batch]
        net.blobs["data"].data[...] = x
        net.forward_loss()
        correct += int(np.sum(net.blobs["ip2"].data[:n].argmax(1) == labels[start:start + n]))
    return correct / len(images)


def pruned(mask) -> list[int]:
    return sorted(np.flatnonzero(~np.asarray(mask, bool)).tolist())


def test_magnitude_mask_known_values(lesson):
    w = np.array([[0.5, -0.1, 0.3, -0.05, 0.9], [-0.2, 0.05, 0.7, -0.6, 0.01]], np.float32)
    keep = w.copy()
    mask = lesson.magnitude_mask(w, 0.3)  # 3 of 10: .01 and both 0.05s
    assert mask.shape == w.shape and mask.dtype == bool
    assert pruned(mask) == [3, 6, 9]
    np.testing.assert_array_equal(w, keep, err_msg="magnitude_mask must not change the weights")
    assert pruned(lesson.magnitude_mask(w, 0.2)) == [3, 9], \
        "2 of 10: .01, then the first stored of the two equal 0.05s"
    assert pruned(lesson.magnitude_mask(np.full(6, 0.5, np.float32), 0.5)) == [0, 1, 2], "all tied"
    assert pruned(lesson.magnitude_mask(np.arange(1, 11, dtype=np.float32), 0.25)) == [0, 1, 2], \
        "0.25 x 10 = 2.5 rounds up to 3"
    assert pruned(lesson.magnitude_mask(np.arange(1, 101, dtype=np.float32), 0.29)) == list(range(29)), \
        "0.29 x 100 is 28.999999999999996 in floating point: round it, do not truncate it"
    assert pruned(lesson.magnitude_mask(w, 0.0)) == []


def test_magnitude_mask_agrees_with_minicaffe(lesson):
    rng = np.random.default_rng(17)
    for shape, sparsity in [((20, 1, 5, 5), 0.9), ((50, 30), 0.5), ((7,), 0.33), ((10, 10), 0.95)]:
        for values in (rng.normal(size=shape), np.round(rng.normal(size=shape), 1)):  # many ties
            values = values.astype(np.float32)
            np.testing.assert_array_equal(lesson.magnitude_mask(values, sparsity),
                                          pruning.magnitude_mask(values, sparsity),
                                          err_msg=f"shape {shape}, sparsity {sparsity}")


def test_global_masks_one_threshold_for_all(lesson, lesson_dir):
    a = np.array([0.5, -0.1, 0.3, -0.05], np.float32)
    b = np.array([[1.0, -0.2], [0.05, 2.0]], np.float32)
    masks = lesson.global_masks([a, b], 0.5)  # 4 of 8: .05(a) .05(b) .1 .2
    assert [m.shape for m in masks] == [a.shape, b.shape]
    assert pruned(masks[0]) == [1, 3] and pruned(masks[1]) == [1, 2]
    masks = lesson.global_masks([a, b], 1 / 8)  # 1 of 8: a tie at .05, the earlier array's goes
    assert pruned(masks[0]) == [3] and pruned(masks[1]) == []
    # Against minicaffe on the MLP's two weight matrices (xavier-filled).
    net = make_solver(lesson_dir, base_lr=0.01, lr_policy="fixed").net
    weights = [net.params["ip1"][0].data.copy(), net.params["ip2"][0].data.copy()]
    reference = pruning.compute_masks(net, 0.8, scope="global")
    for mine, key in zip(lesson.global_masks(weights, 0.8), ("ip1/0", "ip2/0")):
        np.testing.assert_array_equal(mine, reference[key], err_msg=f"{key}: one threshold over both layers")


def test_prune_zeroes_weights_and_spares_biases(lesson, lesson_dir):
    net = make_solver(lesson_dir, base_lr=0.01, lr_policy="fixed").net
    for blob in net.learnable_params:  # non-zero biases, so that sparing them shows
        if blob.data.ndim == 1:
            blob.data[...] = np.linspace(-0.01, 0.01, blob.count)
    before = [blob.data.copy() for blob in net.learnable_params]
    reference = pruning.compute_masks(net, SPARSITY)  # per layer, weights only
    masks = lesson.prune(net, SPARSITY)
    assert len(masks) == len(net.learnable_params) == 4
    for i, (name, index) in enumerate([("ip1", 0), ("ip1", 1), ("ip2", 0), ("ip2", 1)]):
        blob, mask = net.learnable_params[i], masks[i]
        assert mask.shape == blob.shape
        if index == 0:
            np.testing.assert_array_equal(mask, reference[f"{name}/0"], err_msg=f"{name} weights")
        else:
            assert mask.all(), f"{name}'s biases must not be pruned"
        assert not blob.data[~mask].any(), f"{name} param {index}: pruned values must be 0"
        np.testing.assert_array_equal(blob.data[mask], before[i][mask], err_msg="kept values unchanged")


def test_masked_sgd_update_by_hand(lesson):
    w = np.array([0.5, -1.0, 0.25, 0.0], np.float32)
    g = np.array([0.1, 0.2, -0.4, 0.3], np.float32)
    h = np.array([0.01, 0.0, 0.02, -0.05], np.float32)  # momentum from before the pruning
    mask = np.array([True, True, False, False])
    w_in, h_in = w, h
    lesson.masked_sgd_update(w, g, h, mask, rate=0.1, momentum=0.9, decay=0.01)
    assert w is w_in and h is h_in
    # g + 0.01 w = (.105, .19, -.3975, .3); h = 0.9 h + 0.1 (that); w - h, then the mask.
    np.testing.assert_allclose(h, [0.0195, 0.019, -0.02175, -0.015], rtol=1e-5,
                               err_msg="the history: momentum * history + rate * (g + decay * w)")
    np.testing.assert_allclose(w, [0.4805, -1.019, 0.0, 0.0], rtol=1e-5, atol=0)
    assert w[2] == 0 and w[3] == 0, "pruned weights must be exactly 0 after the update, whatever the history"


def test_finetune_matches_minicaffes_solver_with_a_mask(lesson, lesson_dir, digits):
    (images, labels), _ = digits
    rate, iterations = 0.01, 10
    mine = make_solver(lesson_dir, base_lr=rate, lr_policy="fixed")
    start = [blob.data.copy() for blob in mine.net.learnable_params]
    masks = lesson.prune(mine.net, 0.7)
    losses = lesson.finetune(mine.net, masks, images, labels, iterations, rate, 0.9, 0.0005)
    assert len(losses) == iterations

    theirs = make_solver(lesson_dir, base_lr=rate, lr_policy="fixed")
    for blob, values in zip(theirs.net.learnable_params, start):
        blob.data[...] = values
    pruning.attach(theirs, pruning.compute_masks(theirs.net, 0.7), "minicaffe's masks")
    expected = []
    for t in range(iterations):
        feed(theirs.net, images, labels, t)
        theirs.step(1)
        expected.append(theirs.smoothed_loss)  # average_loss 1: this iteration's loss
    np.testing.assert_allclose(losses, expected, rtol=1e-5, err_msg="the loss, iteration by iteration")
    for i, (a, b) in enumerate(zip(mine.net.learnable_params, theirs.net.learnable_params)):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-5, atol=1e-7,
                                   err_msg=f"learnable parameter {i} after {iterations} updates")
        assert not a.data[~masks[i]].any(), f"learnable parameter {i}: a pruned weight moved"


def test_pruning_then_finetuning_recovers_accuracy(lesson, lesson_dir, digits):
    (images, labels), (test_x, test_y) = digits
    solver = make_solver(lesson_dir, base_lr=0.01, lr_policy="inv", gamma=0.0001, power=0.75)
    for t in range(DENSE_ITERATIONS):
        feed(solver.net, images, labels, t)
        solver.step(1)
    net = solver.net
    dense = accuracy(net, test_x, test_y)
    masks = lesson.prune(net, SPARSITY)
    after_pruning = accuracy(net, test_x, test_y)
    lesson.finetune(net, masks, images, labels, TUNE_ITERATIONS, 0.01, 0.9, 0.0005)
    tuned = accuracy(net, test_x, test_y)
    weights = sum(m.size for m in masks if m.ndim >= 2)
    zeros = sum(int(np.count_nonzero(b.data == 0)) for b in net.learnable_params if b.data.ndim >= 2)
    assert zeros >= round(SPARSITY * weights), "the pruned weights must still be 0 after fine-tuning"
    assert dense > 0.88, f"the dense MLP reached only {dense:.1%}"
    assert tuned > after_pruning + 0.15, (f"fine-tuning should win back most of what pruning lost: "
                                          f"{after_pruning:.1%} pruned, {tuned:.1%} fine-tuned")
    assert tuned > dense - 0.05, f"dense {dense:.1%}, fine-tuned {tuned:.1%}"
