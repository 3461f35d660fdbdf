"""Accuracy: top-k known answers, ties, ignore_label, per-class top, a loop reference, the
OpenCL twin against numpy, bad input."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.syncedmem import SyncedMemory
from minicaffe.testing.engines import compare_engines
from tests.strategies import blob_from, layer_param


def accuracy(**param):
    return create_layer(layer_param("Accuracy", accuracy_param=param))


def run(layer, scores, labels, num_tops=1):
    bottom, tops = [blob_from(scores), blob_from(labels)], [Blob() for _ in range(num_tops)]
    layer.setup(bottom, tops)
    layer.forward(bottom, tops)
    return [t.cpu_data().copy() for t in tops]


SCORES = [[0.1, 0.5, 0.4, 0.0],   # ranking 1, 2, 0, 3
          [0.7, 0.1, 0.1, 0.1],   # ranking 0, then a three-way tie
          [0.2, 0.3, 0.1, 0.4],   # ranking 3, 1, 0, 2
          [0.3, 0.3, 0.2, 0.2]]   # 0 and 1 tie for first
LABELS = [2, 1, 0, 0]


@pytest.mark.parametrize("top_k, expected", [
    (1, 0 / 4),  # row 3: the tie with class 1 counts against class 0
    (2, 2 / 4),  # rows 0 and 3
    (3, 3 / 4),  # row 2 as well
    (4, 4 / 4),  # row 1 only now: three other classes score >= its 0.1
])
def test_top_k_known_answers(mode, top_k, expected):
    (acc,) = run(accuracy(top_k=top_k), SCORES, LABELS)
    assert float(acc) == pytest.approx(expected)


def test_per_class_accuracy(mode):
    acc, per_class = run(accuracy(top_k=2), SCORES, LABELS, num_tops=2)
    assert float(acc) == pytest.approx(0.5)
    # class 0: rows 2 (wrong), 3 (right) -> 1/2; class 1: row 1 (wrong) -> 0;
    # class 2: row 0 (right) -> 1; class 3: never seen -> 0
    np.testing.assert_allclose(per_class, [0.5, 0, 1, 0])


def test_ignore_label(mode):
    (acc,) = run(accuracy(ignore_label=0), SCORES, LABELS)  # rows 2, 3 ignored
    assert float(acc) == pytest.approx(0 / 2)
    (acc,) = run(accuracy(ignore_label=0), [[0, 1], [1, 0], [0, 1]], [1, 0, 0])
    assert float(acc) == pytest.approx(1.0)  # only the first row counts, and it is right
    (acc,) = run(accuracy(ignore_label=7), [[0, 1]], [7])
    assert float(acc) == 0  # nothing counted: 0, not 0/0


def test_spatial_labels_on_axis(mode):
    # Scores (N=1, C=2, H=1, W=3): the label at each pixel picks a class along axis 1.
    scores = [[[[0.9, 0.2, 0.6]], [[0.1, 0.8, 0.4]]]]
    (acc,) = run(accuracy(), scores, [[[0, 1, 1]]])
    assert float(acc) == pytest.approx(2 / 3)
    # The same scores with the classes on the last axis, (N=1, W=3, C=2).
    (acc,) = run(accuracy(axis=-1), np.transpose(scores, (0, 2, 3, 1))[:, 0], [[0, 1, 1]])
    assert float(acc) == pytest.approx(2 / 3)


def reference(scores, labels, top_k, ignore):
    """Caffe's loop, transcribed: count classes scoring >= the true one."""
    n, c = scores.shape[:2]
    x = scores.reshape(n, c, -1)
    lab = labels.reshape(n, -1).astype(int)
    hits = count = 0
    per_hits, per_seen = np.zeros(c), np.zeros(c)
    for i in range(n):
        for j in range(x.shape[2]):
            if ignore is not None and lab[i, j] == ignore:
                continue
            per_seen[lab[i, j]] += 1
            better = sum(x[i, k, j] >= x[i, lab[i, j], j] for k in range(c)) - 1
            if better < top_k:
                hits += 1
                per_hits[lab[i, j]] += 1
            count += 1
    per_class = np.where(per_seen > 0, per_hits / np.maximum(per_seen, 1), 0)
    return (hits / count if count else 0.0), per_class


@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 3), st.integers(0, 2**31 - 1),
       st.booleans(), st.data())
def test_matches_caffe_loop(mode, n, c, inner, seed, ignore, data):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 3, (n, c, inner)).astype(np.float32)  # few values: many ties
    labels = rng.integers(0, c, (n, inner)).astype(np.float32)
    top_k = data.draw(st.integers(1, c))
    ignore_label = int(labels.flat[0]) if ignore else None
    param = {"top_k": top_k} if ignore_label is None else {"top_k": top_k, "ignore_label": ignore_label}
    acc, per_class = run(accuracy(**param), scores, labels, num_tops=2)
    expected, expected_per_class = reference(scores, labels, top_k, ignore_label)
    assert float(acc) == pytest.approx(expected)
    np.testing.assert_allclose(per_class, expected_per_class, rtol=1e-6)


@given(st.integers(1, 4), st.integers(2, 5), st.integers(0, 2**31 - 1))
def test_top_k_is_monotone_and_full_k_is_one(mode, n, c, seed):
    rng = np.random.default_rng(seed)
    scores, labels = rng.standard_normal((n, c)), rng.integers(0, c, n)
    values = [float(run(accuracy(top_k=k), scores, labels)[0]) for k in range(1, c + 1)]
    assert values == sorted(values)
    assert values[-1] == 1.0


# ---- the OpenCL twin
@given(st.lists(st.integers(1, 3), min_size=1, max_size=3), st.integers(0, 3), st.integers(1, 6),
       st.sampled_from(["none", "some", "all"]), st.integers(1, 2), st.booleans(),
       st.integers(0, 2**31 - 1), st.data())
def test_engines_agree(gpu_only, other_dims, axis, channels, ignore, top_count, ties, seed, data):
    # Scores (the label dims with C inserted at `axis`), few distinct values when `ties`
    # (ties count against the true class on both engines), every top_k, ignore_label
    # matching none, some or all positions, and the per-class top.
    axis = min(axis, len(other_dims))
    shape = tuple(other_dims[:axis]) + (channels,) + tuple(other_dims[axis:])
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 3, shape) if ties else rng.standard_normal(shape)
    labels = rng.integers(0, channels, other_dims).astype(np.float32)
    param = {"axis": axis, "top_k": data.draw(st.integers(1, channels))}
    if ignore == "some":
        param["ignore_label"] = int(labels.flat[0])
    elif ignore == "all":
        param["ignore_label"] = 7
        labels[...] = 7
    compare_engines(layer_param("Accuracy", accuracy_param=param), [scores, labels], top_count,
                    backward=False)


def test_scores_stay_on_the_device(gpu_only):
    # Scores on the device: only the accuracy itself comes back, when it is read.
    layer = accuracy(top_k=2)
    bottom, tops = [blob_from(SCORES), blob_from(LABELS)], [Blob(), Blob()]
    layer.setup(bottom, tops)
    bottom[0].mutable_gpu_data()
    bottom[1].gpu_data()  # the labels go in once, with the batch
    before = dict(SyncedMemory.transfers)
    layer.forward(bottom, tops)
    assert SyncedMemory.transfers == before
    assert float(tops[0].cpu_data()) == pytest.approx(0.5)
    np.testing.assert_allclose(tops[1].cpu_data(), [0.5, 0, 1, 0])


# ---- bad input
def test_top_k_larger_than_classes(mode):
    with pytest.raises(MinicaffeError, match="top_k \\(4\\) must be at most the number of classes \\(3\\)"):
        run(accuracy(top_k=4), np.zeros((2, 3)), [0, 1])


def test_label_count_must_match(mode):
    with pytest.raises(MinicaffeError, match="number of labels must match"):
        run(accuracy(), np.zeros((2, 3)), [0, 1, 2])


def test_label_out_of_range(mode):
    with pytest.raises(MinicaffeError, match="label 3 at position 1 is out of range"):
        run(accuracy(), np.zeros((2, 3)), [0, 3])


def test_no_backward(mode):
    layer = accuracy()
    bottom, top = [blob_from(np.zeros((2, 3))), blob_from([0, 1])], [Blob()]
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    assert not layer.allow_force_backward(0) and not layer.allow_force_backward(1)
    assert layer.loss_weights == [0.0]
    layer.backward(top, [False, False], bottom)  # nothing asked: fine
    with pytest.raises(MinicaffeError, match="has no backward"):
        layer.backward(top, [True, False], bottom)
