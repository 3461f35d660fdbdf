"""Lesson 01 check: fans against minicaffe's, Xavier statistics, in-place updates."""
import numpy as np
import pytest

from minicaffe import filler
from minicaffe.blob import Blob
from minicaffe.common import set_random_seed

pytestmark = pytest.mark.lesson01

SHAPES = [(20, 1, 5, 5), (50, 20, 5, 5), (500, 800), (10, 500), (7,), (3, 4, 2)]


@pytest.mark.parametrize("shape", SHAPES)
def test_fans_match_minicaffe(lesson, shape):
    assert tuple(lesson.fans(shape)) == filler._fans(Blob(shape))


def test_fans_known_answer(lesson):
    # conv1 of LeNet: each output sees 1*5*5 inputs; each input feeds 20*5*5 outputs.
    assert tuple(lesson.fans((20, 1, 5, 5))) == (25, 500)
    assert tuple(lesson.fans((10, 500))) == (500, 10)


@pytest.mark.parametrize("norm", ["FAN_IN", "FAN_OUT", "AVERAGE"])
@pytest.mark.parametrize("shape", [(200, 50, 3, 3), (300, 700)])
def test_xavier_statistics(lesson, norm, shape):
    fan_in, fan_out = filler._fans(Blob(shape))
    n = {"FAN_IN": fan_in, "FAN_OUT": fan_out, "AVERAGE": (fan_in + fan_out) / 2}[norm]
    bound = np.sqrt(3.0 / n)
    blob = Blob(shape)
    set_random_seed(5)
    lesson.xavier_fill(blob, norm)
    values = blob.cpu_data().astype(np.float64)
    assert blob.shape == shape and blob.cpu_data().dtype == np.float32
    assert np.abs(values).max() <= bound * (1 + 1e-6), "values outside [-a, a]"
    assert np.abs(values).max() > 0.99 * bound, "values do not reach the bound a"
    assert abs(values.mean()) < 0.02 * bound
    # U(-a, a) has variance a^2 / 3 = 1 / n.
    assert values.var() == pytest.approx(1.0 / n, rel=0.03)


def test_xavier_draws_from_minicaffe_rng(lesson):
    first, second = Blob(64, 32), Blob(64, 32)
    set_random_seed(11)
    lesson.xavier_fill(first)
    set_random_seed(11)
    lesson.xavier_fill(second)
    np.testing.assert_array_equal(first.cpu_data(), second.cpu_data(),
                                  err_msg="same seed, different values: use minicaffe.common.rng()")


def test_xavier_writes_into_the_blob(lesson):
    blob, alias = Blob(8, 6), Blob(8, 6)
    alias.share_data(blob)  # as Flatten or shared weights do
    lesson.xavier_fill(blob)
    np.testing.assert_array_equal(alias.cpu_data(), blob.cpu_data())
    assert np.any(blob.cpu_data() != 0)


def test_blob_update(lesson):
    values = np.random.default_rng(0).normal(size=(4, 3, 2)).astype(np.float32)
    step = np.random.default_rng(1).normal(size=(4, 3, 2)).astype(np.float32)
    blob, alias = Blob(4, 3, 2), Blob(4, 3, 2)
    alias.share_data(blob)
    blob.data = values
    blob.diff = step
    lesson.blob_update(blob)
    np.testing.assert_allclose(blob.cpu_data(), values - step, rtol=1e-6)
    np.testing.assert_allclose(alias.cpu_data(), values - step, rtol=1e-6,
                               err_msg="update the memory in place: shared blobs must see it")
    np.testing.assert_array_equal(blob.cpu_diff(), step, err_msg="the diff must not change")
