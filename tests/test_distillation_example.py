"""examples/distillation: the three nets build, the student has a quarter of the teacher's
parameters, and in the distillation net only the student learns (the figures of
docs/distillation.md come from examples/distillation/run_distillation.py, too slow for CI)."""
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from minicaffe import common
from minicaffe.io.idx import read_idx
from minicaffe.net import TEST, TRAIN, Net
from minicaffe.proto import caffe_pb2
from minicaffe.solvers import get_solver

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "distillation"
TEACHER, STUDENT, DISTILL = (EXAMPLE / f"{n}_train.prototxt" for n in ("teacher", "student", "distill"))
TEACHER_LAYERS = ["conv1", "conv2", "ip1", "ip2"]
STUDENT_LAYERS = [f"student_{name}" for name in TEACHER_LAYERS]


@pytest.fixture(scope="module")
def digits():
    """The first 100 real training digits (one batch), scaled as the example scales them."""
    x = read_idx(ROOT / "data/mnist/train-10k-images-idx3-ubyte.gz")[:100, None].astype(np.float32) / 256
    y = read_idx(ROOT / "data/mnist/train-10k-labels-idx1-ubyte.gz")[:100].astype(np.float32)
    return np.ascontiguousarray(x), y


def count(net: Net) -> int:
    return sum(blob.count for blobs in net.params.values() for blob in blobs)


def test_the_student_has_a_quarter_of_the_teachers_parameters():
    with common.using_mode(common.CPU):
        teacher, student = Net(str(TEACHER), TEST), Net(str(STUDENT), TEST)
    # Worked by hand: conv 1x5x5 -> 32 and 32x5x5 -> 64, ip 64*4*4 -> 1000 -> 10, with biases;
    # the student has 16, 32 filters and 500 units.
    assert count(teacher) == (25 * 32 + 32) + (32 * 25 * 64 + 64) + (1024 * 1000 + 1000) + (1000 * 10 + 10)
    assert count(student) == (25 * 16 + 16) + (16 * 25 * 32 + 32) + (512 * 500 + 500) + (500 * 10 + 10)
    assert count(teacher) == 1_087_106 and count(student) == 274_758
    assert 0.24 < count(student) / count(teacher) < 0.26


def test_the_distillation_test_net_is_the_student_alone():
    with common.using_mode(common.CPU):
        distill, student = Net(str(DISTILL), TEST), Net(str(STUDENT), TEST)
    assert distill.layer_names == student.layer_names
    assert {n: [b.shape for b in blobs] for n, blobs in distill.params.items()} == \
        {n: [b.shape for b in blobs] for n, blobs in student.params.items()}


def test_baseline_and_distilled_students_start_from_the_same_weights():
    # Same seed, student layers first in both files: the fillers draw the same numbers, so
    # the two runs of run_distillation.py differ only in their loss.
    with common.using_mode(common.CPU):
        common.set_random_seed(5)
        student = Net(str(STUDENT), TRAIN)
        common.set_random_seed(5)
        distill = Net(str(DISTILL), TRAIN)
    for name in STUDENT_LAYERS:
        for a, b in zip(student.params[name], distill.params[name]):
            np.testing.assert_array_equal(a.data, b.data)


def test_only_the_student_learns(digits, tmp_path):
    with common.using_mode(common.CPU):
        common.set_random_seed(3)
        teacher = Net(str(TEACHER), TRAIN)
        teacher_weights = tmp_path / "teacher.caffemodel"
        teacher.save(teacher_weights)
        param = text_format.Parse('base_lr: 0.01 momentum: 0.9 lr_policy: "fixed" display: 0 '
                                  'random_seed: 3 snapshot_after_train: false max_iter: 1',
                                  caffe_pb2.SolverParameter())
        param.net = str(DISTILL)
        solver = get_solver(param)
        net = solver.net
        net.copy_from(str(teacher_weights))
        net.set_input_arrays(*digits)
        for name in TEACHER_LAYERS:  # the teacher's trained weights were copied in
            np.testing.assert_array_equal(net.params[name][0].data, teacher.params[name][0].data)
        before = {name: [b.data.copy() for b in blobs] for name, blobs in net.params.items()}

        records = {r.name: r for r in net.layer_records}
        # The Net asks nothing of the frozen teacher: no backward there, and the
        # DistillationLoss is asked for the student's gradient only.
        assert not any(records[name].need_backward for name in TEACHER_LAYERS)
        assert records["distill"].bottom_need_backward == [True, False]
        student_scores, teacher_scores = (b.name for b in records["distill"].bottoms)
        assert student_scores.startswith("student_ip2") and teacher_scores == "ip2"  # (via a Split)

        solver.step(1)
        assert np.isfinite(float(net.blobs["distill_loss"].data)) and float(net.blobs["distill_loss"].data) > 0
        for name in STUDENT_LAYERS:  # every student parameter got a gradient and moved
            for blob, old in zip(net.params[name], before[name]):
                assert np.abs(blob.diff).max() > 0, name
                assert not np.array_equal(blob.data, old), name
        for name in TEACHER_LAYERS:  # the teacher's stayed as they were, with no gradient
            for blob, old in zip(net.params[name], before[name]):
                np.testing.assert_array_equal(blob.data, old)
                np.testing.assert_array_equal(blob.diff, 0)
