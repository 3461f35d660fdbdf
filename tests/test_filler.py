"""Fillers: Caffe's distributions, checked statistically on large blobs, and seeding."""
import numpy as np
import pytest

from minicaffe import common
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.filler import fill
from minicaffe.proto import caffe_pb2


def filled(shape, **fields):
    blob = Blob(shape)
    fill(blob, caffe_pb2.FillerParameter(**fields))
    return blob.cpu_data()


def test_constant():
    assert (filled((2, 3), type="constant", value=1.5) == 1.5).all()


def test_uniform_range():
    x = filled((100, 100), type="uniform", min=-2, max=3)
    assert x.min() >= -2 and x.max() <= 3 and abs(x.mean() - 0.5) < 0.05


def test_gaussian_moments():
    x = filled((200, 100), type="gaussian", mean=1, std=2)
    assert abs(x.mean() - 1) < 0.05 and abs(x.std() - 2) < 0.05


def test_sparse_gaussian_keeps_expected_fraction():
    x = filled((100, 2000), type="gaussian", sparse=30)
    assert abs((x != 0).mean() - 30 / 100) < 0.01


@pytest.mark.parametrize("norm, n", [(0, 40 * 5 * 5), (1, 30 * 5 * 5), (2, 35 * 5 * 5)])
def test_xavier_bound_and_variance(norm, n):
    # shape (num_output=30, channels=40, 5, 5): fan_in = 1000, fan_out = 750
    x = filled((30, 40, 5, 5), type="xavier", variance_norm=norm)
    bound = np.sqrt(3.0 / n)
    assert np.abs(x).max() <= bound + 1e-7
    assert abs(x.var() - 1.0 / n) < 0.1 / n


def test_msra_variance():
    x = filled((50, 40, 5, 5), type="msra")
    assert abs(x.var() - 2.0 / 1000) < 0.1 * 2.0 / 1000 and abs(x.mean()) < 0.01


def test_positive_unitball_rows_sum_to_one():
    x = filled((7, 3, 4), type="positive_unitball")
    assert (x >= 0).all()
    np.testing.assert_allclose(x.reshape(7, -1).sum(axis=1), 1, rtol=1e-5)


def test_bilinear_kernel_known_answer():
    x = filled((1, 1, 4, 4), type="bilinear")
    # f = 2, c = 0.75: tent = 1 - |i/2 - 0.75| = [0.25, 0.75, 0.75, 0.25]
    tent = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(x[0, 0], np.outer(tent, tent))


def test_seed_makes_fills_repeatable():
    common.set_random_seed(5)
    a = filled((10,), type="gaussian").copy()
    common.set_random_seed(5)
    np.testing.assert_array_equal(a, filled((10,), type="gaussian"))


def test_unknown_filler_is_named():
    with pytest.raises(MinicaffeError, match="unknown filler type 'gausian'"):
        filled((2,), type="gausian")
