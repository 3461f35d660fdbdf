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
