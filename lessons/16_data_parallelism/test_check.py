"""Lesson 16 check: sharding by Caffe's rule, the all-reduce mean, and N simulated ranks
that train an MLP on real MNIST digits to the same weights as one minicaffe SGDSolver
that sees the same items per update, through iter_size N or a batch N times larger."""
import numpy as np
import pytest

from minicaffe import common
from minicaffe.io.idx import read_images, read_labels
from minicaffe.net import Net
from minicaffe.proto import caffe_pb2
from minicaffe.protoio import read_net_param
from minicaffe.solvers import get_solver

pytestmark = pytest.mark.lesson16

RANKS = 4
BATCH = 16           # per rank: one update sees RANKS * BATCH = 64 items
ITEMS = 512          # 8 updates' worth: 10 iterations wrap around to the first items
ITERATIONS = 10

SOLVER = dict(base_lr=0.01, momentum=0.9, weight_decay=0.0005, lr_policy="inv",
              gamma=0.0001, power=0.75, display=0, max_iter=10000, snapshot=0, random_seed=1)


@pytest.fixture(scope="module")
def digits(lesson_dir):
    mnist = lesson_dir.parents[1] / "data" / "mnist"
    pixels = read_images(mnist / "train-10k-images-idx3-ubyte.gz")[:ITEMS]
    labels = read_labels(mnist / "train-10k-labels-idx1-ubyte.gz")[:ITEMS]
    # Caffe's transform_param { scale: 0.00390625 }; float32, as MemoryData wants them.
    return (np.ascontiguousarray(pixels[:, None].astype(np.float32) * np.float32(1 / 256)),
            labels.astype(np.float32))


def net_param(lesson_dir, batch: int, memory_data: bool) -> caffe_pb2.NetParameter:
    """mlp.prototxt with a batch of `batch`: its Input layer, or a MemoryData layer that
    serves the arrays a batch per forward (so that solver.step can feed itself)."""
    param = read_net_param(lesson_dir / "mlp.prototxt")
    first = param.layer[0]
    if memory_data:
        first.ClearField("input_param")
        first.type = "MemoryData"
        first.memory_data_param.MergeFrom(caffe_pb2.MemoryDataParameter(
            batch_size=batch, channels=1, height=28, width=28))
    else:
        first.input_param.shape[0].dim[0] = batch
        first.input_param.shape[1].dim[0] = batch
    return param


def make_solver(lesson_dir, batch: int, iter_size: int = 1, memory_data: bool = False, start=None):
    param = caffe_pb2.SolverParameter(iter_size=iter_size, **SOLVER)
    param.net_param.CopyFrom(net_param(lesson_dir, batch, memory_data))
    solver = get_solver(param)
    if start is not None:  # the same initial weights, whatever the fillers drew
        for blob, values in zip(solver.net.learnable_params, start):
            blob.data[...] = values
    return solver


def weights(net) -> list[np.ndarray]:
    return [blob.data.copy() for blob in net.learnable_params]


@pytest.fixture(autouse=True)
def cpu():
    with common.using_mode(common.CPU):
        yield


def test_shards_follow_caffes_rule(lesson):
    # Caffe's DataLayer: rank r keeps item i when i % N == r.
    assert [list(lesson.shard(10, rank, 3)) for rank in range(3)] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert list(lesson.shard(5, 0, 1)) == [0, 1, 2, 3, 4]
    for n_items, size in [(64, 4), (7, 2), (3, 5), (100, 8)]:
        shards = [np.asarray(lesson.shard(n_items, rank, size)) for rank in range(size)]
        together = np.concatenate(shards)
        assert sorted(together.tolist()) == list(range(n_items)), \
            f"{n_items} items over {size} ranks: the shards must be disjoint and cover every item"
        assert max(map(len, shards)) - min(map(len, shards)) <= 1, "shard sizes differ by at most one"


def test_allreduce_mean_known_values(lesson):
    ranks = [[np.array([1, 2], np.float32), np.array([[10]], np.float32)],
             [np.array([3, 6], np.float32), np.array([[20]], np.float32)],
             [np.array([5, 1], np.float32), np.array([[60]], np.float32)]]
    keep = [[g.copy() for g in rank] for rank in ranks]
    mean = lesson.allreduce_mean(ranks)
    assert len(mean) == 2
    np.testing.assert_allclose(mean[0], [3, 3])
    np.testing.assert_allclose(mean[1], [[30]])
    assert mean[1].shape == (1, 1) and mean[0].dtype == np.float32
    for rank, kept in zip(ranks, keep):
        for g, k in zip(rank, kept):
            np.testing.assert_array_equal(g, k, err_msg="allreduce_mean must not change its inputs")
    alone = lesson.allreduce_mean([ranks[2]])
    np.testing.assert_allclose(alone[1], [[60]], err_msg="one rank: its own gradient")


def test_rank_gradients_are_one_batch_gradient(lesson, lesson_dir, digits):
    images, labels = digits
    net = Net(net_param(lesson_dir, BATCH, memory_data=False), phase="TRAIN")
    loss, first = lesson.rank_gradients(net, images[:BATCH], labels[:BATCH])
    # A second batch must start from zero diffs and must not overwrite the first result.
    lesson.rank_gradients(net, images[BATCH:2 * BATCH], labels[BATCH:2 * BATCH])
    reference = Net(net_param(lesson_dir, BATCH, memory_data=False), phase="TRAIN")
    for mine, theirs in zip(net.learnable_params, reference.learnable_params):
        theirs.data[...] = mine.data
    reference.blobs["data"].data[...] = images[:BATCH]
    reference.blobs["label"].data[...] = labels[:BATCH]
    assert loss == pytest.approx(reference.forward_backward(), rel=1e-6)
    assert len(first) == len(reference.learnable_params)
    for g, blob in zip(first, reference.learnable_params):
        np.testing.assert_allclose(g, blob.diff, rtol=1e-5, atol=1e-7)


def test_mean_of_shard_gradients_is_the_big_batch_gradient(lesson, lesson_dir, digits):
    images, labels = digits
    big = RANKS * BATCH
    rank_net = Net(net_param(lesson_dir, BATCH, memory_data=False), phase="TRAIN")
    per_rank = []
    for rank in range(RANKS):
        mine = lesson.shard(big, rank, RANKS)
        per_rank.append(lesson.rank_gradients(rank_net, images[mine], labels[mine])[1])
    mean = lesson.allreduce_mean(per_rank)

    # The reference: one net, one batch of all RANKS * BATCH items, same weights.
    whole = Net(net_param(lesson_dir, big, memory_data=False), phase="TRAIN")
    for mine, theirs in zip(rank_net.learnable_params, whole.learnable_params):
        theirs.data[...] = mine.data
    whole.blobs["data"].data[...] = images[:big]
    whole.blobs["label"].data[...] = labels[:big]
    whole.forward_backward()
    assert len(mean) == len(whole.learnable_params)
    for i, (g, blob) in enumerate(zip(mean, whole.learnable_params)):
        np.testing.assert_allclose(g, blob.diff, rtol=1e-5, atol=1e-7,
                                   err_msg=f"learnable parameter {i}: the mean over ranks is not "
                                           "the gradient of the whole batch")


@pytest.mark.parametrize("reference", ["iter_size", "big_batch"])
def test_ranks_train_like_one_solver(lesson, lesson_dir, digits, reference):
    images, labels = digits
    ranks = make_solver(lesson_dir, BATCH)
    start = weights(ranks.net)
    losses = lesson.train(ranks, images, labels, RANKS, ITERATIONS)
    assert ranks.iter == ITERATIONS and len(losses) == ITERATIONS

    # One solver, the same items per update, fed by its own MemoryData layer.
    if reference == "iter_size":  # RANKS passes of BATCH items, gradients averaged
        single = make_solver(lesson_dir, BATCH, iter_size=RANKS, memory_data=True, start=start)
    else:                         # one pass of RANKS * BATCH items
        single = make_solver(lesson_dir, RANKS * BATCH, memory_data=True, start=start)
    single.net.set_input_arrays(images, labels)
    expected_losses = []
    for _ in range(ITERATIONS):
        single.step(1)
        expected_losses.append(single.smoothed_loss)  # this iteration's loss
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-5,
                               err_msg="the mean loss over ranks, iteration by iteration")
    for i, (mine, theirs) in enumerate(zip(ranks.net.learnable_params, single.net.learnable_params)):
        np.testing.assert_allclose(mine.data, theirs.data, rtol=1e-5, atol=1e-6,
                                   err_msg=f"learnable parameter {i} after {ITERATIONS} updates")
