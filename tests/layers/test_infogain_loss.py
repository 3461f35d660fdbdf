"""InfogainLoss: known loss and gradient, the internal softmax and its axis, H from a third
bottom or a .binaryproto file, normalization and ignore_label, gradients (Caffe's checker
settings), the OpenCL twin against numpy, bad input."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicaffe import protoio
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.syncedmem import SyncedMemory
from minicaffe.testing import GradientChecker
from minicaffe.testing.engines import compare_engines
from tests.strategies import blob_from, layer_param


def infogain(axis=1, source=None, **loss_param):
    param = {"axis": axis}
    if source is not None:
        param["source"] = str(source)
    return create_layer(layer_param("InfogainLoss", infogain_loss_param=param,
                                    loss_param=loss_param))


def run(layer, scores, labels, h=None, num_tops=1):
    bottom = [blob_from(scores), blob_from(labels)] + ([] if h is None else [blob_from(h)])
    tops = [Blob() for _ in range(num_tops)]
    layer.setup(bottom, tops)
    loss = layer.forward(bottom, tops)
    layer.backward(tops, [True, False, False][:len(bottom)], bottom)
    return loss, tops, bottom


LN2, LN7 = math.log(2), math.log(7)
# Row 0: p = (1/3, 1/3, 1/3), label 0.  Row 1: p = (0.1, 0.2, 0.7), label 2.
SCORES, LABELS = [[0, 0, 0], [0, LN2, LN7]], [0, 2]
H = [[1, 0.5, 0], [0, 1, 0], [0.25, 0.25, 1]]
# -sum_k H[label, k] log p_k per row, over the 2 labelled rows (VALID).
EXPECTED = (1.5 * math.log(3) - (0.25 * math.log(0.1) + 0.25 * math.log(0.2) + math.log(0.7))) / 2
# (p sum_k H[label, k] - H[label]) / 2: row 0 (0.5 - (1, 0.5, 0)), row 1 (1.5 p - (0.25, 0.25, 1)).
EXPECTED_DIFF = np.array([[-0.5, 0, 0.5], [-0.1, 0.05, 0.05]]) / 2


def test_known_loss_and_gradient(mode):
    loss, tops, bottom = run(infogain(), SCORES, LABELS, H)
    assert loss == pytest.approx(EXPECTED, rel=1e-6)
    np.testing.assert_allclose(bottom[0].cpu_diff(), EXPECTED_DIFF, atol=1e-7)
    np.testing.assert_array_equal(bottom[1].cpu_diff(), 0)  # labels get nothing
    np.testing.assert_array_equal(bottom[2].cpu_diff(), 0)  # nor does H


def test_second_top_is_the_probabilities(mode):
    _, tops, _ = run(infogain(), SCORES, LABELS, H, num_tops=2)
    np.testing.assert_allclose(tops[1].cpu_data(), [[1 / 3, 1 / 3, 1 / 3], [0.1, 0.2, 0.7]], rtol=1e-6)


def test_h_from_a_binaryproto_file(mode, tmp_path):
    path = tmp_path / "H.binaryproto"
    protoio.write_binary(path, blob_from(np.reshape(H, (1, 1, 3, 3))).to_proto())
    loss, _, bottom = run(infogain(source=path), SCORES, LABELS)
    assert loss == pytest.approx(EXPECTED, rel=1e-6)
    np.testing.assert_allclose(bottom[0].cpu_diff(), EXPECTED_DIFF, atol=1e-7)


def test_axis(mode):
    # Classes on the last axis: (N=2, inner=1, C=3); the same two rows as above.
    loss, _, bottom = run(infogain(axis=-1), np.reshape(SCORES, (2, 1, 3)), [[0], [2]], H)
    assert loss == pytest.approx(EXPECTED, rel=1e-6)
    np.testing.assert_allclose(bottom[0].cpu_diff()[:, 0], EXPECTED_DIFF, atol=1e-7)


def test_ignore_label_and_normalization(mode):
    # Ignoring row 1 (label 2) leaves row 0's 1.5 ln 3, divided by the kept count 1 (VALID)
    # or by every position, 2 (FULL); the ignored row gets no gradient.
    loss, _, bottom = run(infogain(ignore_label=2), SCORES, LABELS, H)
    assert loss == pytest.approx(1.5 * math.log(3), rel=1e-6)
    np.testing.assert_array_equal(bottom[0].cpu_diff()[1], 0)
    loss, _, _ = run(infogain(ignore_label=2, normalization="FULL"), SCORES, LABELS, H)
    assert loss == pytest.approx(0.75 * math.log(3), rel=1e-6)


def test_without_ignore_label_class_0_counts(mode):
    # ignore_label is unset by default: label 0 is an ordinary class, not skipped.
    loss, _, _ = run(infogain(normalization="NONE"), [[0, 0, 0]], [0], np.eye(3))
    assert loss == pytest.approx(math.log(3), rel=1e-6)


@given(st.integers(0, 2**31 - 1))
def test_identity_h_is_softmax_with_loss(mode, seed):
    # With H = I only the true class's log-probability remains: SoftmaxWithLoss.
    rng = np.random.default_rng(seed)
    scores, labels = rng.uniform(-3, 3, (3, 4, 2)), rng.integers(0, 4, (3, 2)).astype(np.float32)
    loss, _, bottom = run(infogain(), scores, labels, np.eye(4))
    reference = create_layer(layer_param("SoftmaxWithLoss"))
    ref_bottom, ref_top = [blob_from(scores), blob_from(labels)], [Blob()]
    reference.setup(ref_bottom, ref_top)
    assert loss == pytest.approx(reference.forward(ref_bottom, ref_top), rel=1e-5)
    reference.backward(ref_top, [True, False], ref_bottom)
    np.testing.assert_allclose(bottom[0].cpu_diff(), ref_bottom[0].cpu_diff(), atol=1e-6)


NORMALIZATIONS = ["FULL", "VALID", "BATCH_SIZE", "NONE"]


@st.composite
def cases(draw):
    """Scores uniform in [-0.5, 2] and H in [0.1, 2] as in Caffe's test; classes on `axis`."""
    dims = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    axis = draw(st.integers(1, len(dims)))
    c = draw(st.integers(2, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    scores = rng.uniform(-0.5, 2, tuple(dims[:axis]) + (c,) + tuple(dims[axis:]))
    labels = rng.integers(0, c, dims).astype(np.float32)
    loss_param = {"normalization": draw(st.sampled_from(NORMALIZATIONS))}
    if draw(st.booleans()):
        loss_param["ignore_label"] = int(labels.flat[0])  # ignore at least one position
    return axis, loss_param, scores, labels, rng.uniform(0.1, 2, (c, c))


@given(cases())
def test_gradient(mode, case):
    # Caffe's settings, stepsize 1e-4 and threshold 2e-2, are for a loss averaged over the
    # positions (FULL, VALID; Caffe's test uses VALID). Unaveraged (BATCH_SIZE, NONE) the
    # loss is several times larger, and the float32 rounding of the top, divided by the
    # 2e-4 of a central difference, alone exceeds the threshold: those take a 1e-2 step.
    axis, loss_param, scores, labels, h = case
    averaged = loss_param["normalization"] in ("FULL", "VALID")
    checker = GradientChecker(1e-4 if averaged else 1e-2, 2e-2, 1701)
    checker.check_gradient_exhaustive(infogain(axis, **loss_param),
                                      [blob_from(scores), blob_from(labels), blob_from(h)],
                                      [Blob()], check_bottom=0)


@given(cases(), st.integers(1, 2))
def test_engines_agree(gpu_only, case, top_count):
    axis, loss_param, scores, labels, h = case
    param = layer_param("InfogainLoss", infogain_loss_param={"axis": axis}, loss_param=loss_param)
    compare_engines(param, [scores * 3, labels, h], top_count, propagate_down=[True, False, False])


def test_data_stays_on_the_device(gpu_only):
    layer = infogain(ignore_label=2)
    bottom, top = [blob_from(SCORES), blob_from(LABELS), blob_from(H)], [Blob()]
    layer.setup(bottom, top)
    for blob in bottom:
        blob.gpu_data()
    bottom[0].mutable_gpu_data()
    for _ in range(2):  # the loss weight goes to the device once, in the first backward
        before = dict(SyncedMemory.transfers)
        assert layer.forward(bottom, top) == pytest.approx(1.5 * math.log(3), rel=1e-6)
        layer.backward(top, [True, False, False], bottom)
    assert SyncedMemory.transfers == {**before, "to_cpu": before["to_cpu"] + 1}


# ---- bad input
def named(**loss_param):
    return create_layer(layer_param("InfogainLoss", name="info", loss_param=loss_param))


def test_h_must_be_given(mode):
    with pytest.raises(MinicaffeError, match="InfogainLoss layer 'info': the infogain matrix H "
                                             "must be given.*infogain_loss_param.source"):
        named().setup([blob_from(SCORES), blob_from(LABELS)], [Blob()])


def test_missing_h_file(mode, tmp_path):
    with pytest.raises(MinicaffeError, match="nothere.binaryproto: no such file"):
        infogain(source=tmp_path / "nothere.binaryproto").setup(
            [blob_from(SCORES), blob_from(LABELS)], [Blob()])


def test_h_must_be_c_by_c(mode):
    with pytest.raises(MinicaffeError, match=r"InfogainLoss layer 'info': H must be 3x3"):
        named().setup([blob_from(SCORES), blob_from(LABELS), blob_from(np.eye(2))], [Blob()])


def test_deprecated_normalize_is_refused(mode):
    with pytest.raises(MinicaffeError, match="InfogainLoss layer 'info'.*normalize is deprecated"):
        named(normalize=True).setup([blob_from(SCORES), blob_from(LABELS), blob_from(H)], [Blob()])


def test_label_count_must_match(mode):
    with pytest.raises(MinicaffeError, match="number of labels must match.*need 4 labels"):
        run(infogain(), np.zeros((2, 3, 2)), np.zeros((2, 3)), np.eye(3))


@pytest.mark.parametrize("label", [3, -1])
def test_label_out_of_range(mode, label):
    with pytest.raises(MinicaffeError, match=f"label {label} at position 1 is out of range"):
        run(infogain(), SCORES, [0, label], H)


@pytest.mark.parametrize("which, what", [(1, "label"), (2, "infogain")])
def test_cannot_backpropagate_to_labels_or_h(mode, which, what):
    layer = infogain()
    bottom, top = [blob_from(SCORES), blob_from(LABELS), blob_from(H)], [Blob()]
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    assert not layer.allow_force_backward(which)
    propagate_down = [True, False, False]
    propagate_down[which] = True
    with pytest.raises(MinicaffeError, match=f"cannot backpropagate to {what} inputs"):
        layer.backward(top, propagate_down, bottom)
