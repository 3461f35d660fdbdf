"""The GradientChecker itself: it passes a correct layer and catches a wrong one."""
import numpy as np
import pytest

from minicaffe.blob import Blob
from minicaffe.layer import Layer
from minicaffe.proto import caffe_pb2
from minicaffe.testing import GradientChecker
from minicaffe.testing.gradient_check import GradientCheckFailure
from tests.strategies import blob_from


class Square(Layer):
    """y = x^2 (optionally with a wrong backward, to prove the checker notices)."""
    type = "TestSquare"

    def __init__(self, wrong=False, kink_abs=False):
        super().__init__(caffe_pb2.LayerParameter(name="sq", type=self.type))
        self.wrong, self.kink_abs = wrong, kink_abs

    def reshape(self, bottom, top):
        top[0].reshape_like(bottom[0])

    def forward_cpu(self, bottom, top):
        x = bottom[0].cpu_data()
        top[0].mutable_cpu_data()[...] = np.abs(x) if self.kink_abs else x * x

    def backward_cpu(self, top, propagate_down, bottom):
        x, dy = bottom[0].cpu_data(), top[0].cpu_diff()
        grad = np.sign(x) if self.kink_abs else (3 if self.wrong else 2) * x
        bottom[0].mutable_cpu_diff()[...] = dy * grad


def test_correct_layer_passes_all_modes():
    x = blob_from(np.linspace(-1, 1, 12).reshape(3, 4))
    checker = GradientChecker(1e-2, 1e-3)
    checker.check_gradient(Square(), [x], [Blob()])
    checker.check_gradient_exhaustive(Square(), [x], [Blob()])
    checker.check_gradient_eltwise(Square(), [x], [Blob()])


def test_wrong_gradient_is_caught():
    x = blob_from([[0.5, -1.0, 2.0]])
    with pytest.raises(GradientCheckFailure, match="gradient mismatch"):
        GradientChecker(1e-2, 1e-3).check_gradient(Square(wrong=True), [x], [Blob()])


def test_kink_is_skipped_only_within_range():
    # |x| has a kink at 0; E = y_j (exhaustive mode) keeps it (E = y^2/2 would smooth it away)
    x = blob_from([[0.001, 0.5, -0.7]])
    with pytest.raises(GradientCheckFailure):
        GradientChecker(1e-2, 1e-3).check_gradient_exhaustive(Square(kink_abs=True), [x], [Blob()])
    GradientChecker(1e-2, 1e-3, kink=0.0, kink_range=0.02).check_gradient_exhaustive(
        Square(kink_abs=True), [x], [Blob()])


class ReadsDataForDiff(Square):
    """y = x^2 with a backward that uses y where it should use dE/dy: invisible under
    E = sum(y^2)/2 (there dE/dy = y), caught as soon as E is one element of y."""

    def backward_cpu(self, top, propagate_down, bottom):
        x, y = bottom[0].cpu_data(), top[0].cpu_data()
        bottom[0].mutable_cpu_diff()[...] = y * 2 * x


class LeaksSideways(Square):
    """y = x^2 with a backward that also leaks 0.5 * (sum(dy) - dy_i) into every element."""

    def backward_cpu(self, top, propagate_down, bottom):
        x, dy = bottom[0].cpu_data(), top[0].cpu_diff()
        bottom[0].mutable_cpu_diff()[...] = dy * 2 * x + 0.5 * (dy.sum() - dy)


class Scale(Layer):
    """y = w * x with a learnable scalar w; the bottom gradient is wrong on purpose, and the
    layer records which bottoms it was asked to propagate to."""
    type = "TestScale"

    def __init__(self):
        super().__init__(caffe_pb2.LayerParameter(name="scale", type=self.type))
        self.asked = []

    def layer_setup(self, bottom, top):
        self.blobs = [blob_from([1.5])]

    def reshape(self, bottom, top):
        top[0].reshape_like(bottom[0])

    def forward_cpu(self, bottom, top):
        top[0].mutable_cpu_data()[...] = self.blobs[0].cpu_data()[0] * bottom[0].cpu_data()

    def backward_cpu(self, top, propagate_down, bottom):
        self.asked.append(list(propagate_down))
        dy, x = top[0].cpu_diff(), bottom[0].cpu_data()
        self.blobs[0].mutable_cpu_diff()[...] += np.sum(dy * x)
        if propagate_down[0]:
            bottom[0].mutable_cpu_diff()[...] = dy * 7.0  # wrong: should be dy * w


def test_using_top_data_as_top_diff_is_caught_by_the_exhaustive_mode():
    x = blob_from([[0.5, -1.0, 2.0]])
    GradientChecker(1e-2, 1e-3).check_gradient(ReadsDataForDiff(), [x], [Blob()])  # blind here
    with pytest.raises(GradientCheckFailure, match="gradient mismatch"):
        GradientChecker(1e-2, 1e-3).check_gradient_exhaustive(ReadsDataForDiff(), [x], [Blob()])


def test_gradient_leaking_into_other_elements_is_caught_by_the_eltwise_mode():
    x = blob_from([[0.5, -1.0, 2.0, 0.25]])
    with pytest.raises(GradientCheckFailure, match="gradient mismatch"):
        GradientChecker(1e-2, 1e-3).check_gradient_eltwise(LeaksSideways(), [x], [Blob()])


def test_check_bottom_below_minus_one_checks_parameters_only():
    x = blob_from([[0.5, -1.0, 2.0]])
    layer = Scale()
    GradientChecker(1e-2, 1e-3).check_gradient(layer, [x], [Blob()], check_bottom=-2)
    assert layer.asked and all(asked == [False] for asked in layer.asked)
    with pytest.raises(GradientCheckFailure, match=r"blob 1 \(bottom\)"):
        GradientChecker(1e-2, 1e-3).check_gradient(Scale(), [x], [Blob()], check_bottom=-1)
