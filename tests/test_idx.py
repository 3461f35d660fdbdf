"""IDX reading on the real MNIST files, round trips, and the errors a user can cause."""
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicaffe.common import MinicaffeError
from minicaffe.io.idx import IDX_DTYPES, idx_magic, read_idx, read_images, read_labels, write_idx

REPO = Path(__file__).resolve().parents[1]
MNIST = next((d for d in (REPO / "data" / "mnist", REPO.parent / "shared" / "data" / "mnist")
              if (d / "t10k-images-idx3-ubyte.gz").is_file()), REPO / "data" / "mnist")
T10K_IMAGES = MNIST / "t10k-images-idx3-ubyte.gz"
T10K_LABELS = MNIST / "t10k-labels-idx1-ubyte.gz"


def raw_bytes(path):
    with gzip.open(path, "rb") as f:
        return f.read()


def test_t10k_images_shape_and_pixels(mode):
    images = read_images(T10K_IMAGES)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    raw = raw_bytes(T10K_IMAGES)
    assert struct.unpack(">IIII", raw[:16]) == (2051, 10000, 28, 28)
    assert images.tobytes() == raw[16:]
    assert images[17, 14].tolist() == list(raw[16 + 17 * 784 + 14 * 28: 16 + 17 * 784 + 15 * 28])


def test_t10k_labels_known_answers(mode):
    labels = read_labels(T10K_LABELS)
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert labels[0] == 7  # the first digit of the official test set is a 7
    raw = raw_bytes(T10K_LABELS)
    assert struct.unpack(">II", raw[:8]) == (2049, 10000)
    assert labels.tolist() == list(raw[8:])
    # Class counts of the official test set, as published with MNIST.
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_train_10k_subset(mode):
    images = read_images(MNIST / "train-10k-images-idx3-ubyte.gz")
    labels = read_labels(MNIST / "train-10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert set(labels.tolist()) == set(range(10))
    assert idx_magic(MNIST / "train-10k-images-idx3-ubyte.gz") == 2051


def test_gzip_detected_by_magic_not_name(mode, tmp_path):
    raw = raw_bytes(T10K_LABELS)
    misnamed_raw = tmp_path / "labels.gz"  # raw bytes under a .gz name
    misnamed_raw.write_bytes(raw)
    misnamed_gz = tmp_path / "labels-idx1-ubyte"  # gzip under a plain name
    misnamed_gz.write_bytes(T10K_LABELS.read_bytes())
    expected = read_labels(T10K_LABELS)
    np.testing.assert_array_equal(read_idx(misnamed_raw), expected)
    np.testing.assert_array_equal(read_idx(misnamed_gz), expected)


@given(dtype_code=st.sampled_from(sorted(IDX_DTYPES)),
       shape=st.lists(st.integers(0, 4), min_size=1, max_size=4).map(tuple),
       seed=st.integers(0, 2**31 - 1), compress=st.booleans())
def test_write_read_round_trip(mode, tmp_path_factory, dtype_code, shape, seed, compress):
    dtype = IDX_DTYPES[dtype_code].newbyteorder("=")
    values = np.random.default_rng(seed).integers(-100, 100, shape).astype(dtype)
    path = tmp_path_factory.mktemp("idx") / "a.idx"
    write_idx(path, values, compress=compress)
    back = read_idx(path)
    assert back.dtype == dtype and back.shape == shape
    np.testing.assert_array_equal(back, values)
    data = path.read_bytes()
    assert (data[:2] == b"\x1f\x8b") == compress
    header = gzip.decompress(data)[:4] if compress else data[:4]
    assert header == bytes([0, 0, dtype_code, len(shape)])


def test_missing_file(mode, tmp_path):
    with pytest.raises(MinicaffeError, match="no-such-file.*no such file"):
        read_idx(tmp_path / "no-such-file")


@pytest.mark.parametrize("head", [b"\x01\x02\x08\x01", b"\x00\x00\x07\x01", b"PK\x03\x04", b"\x00"])
def test_bad_magic(mode, tmp_path, head):
    path = tmp_path / "bad-idx"
    path.write_bytes(head + b"\x00" * 12)
    with pytest.raises(MinicaffeError, match=r"bad-idx: not an IDX file \(bad magic"):
        read_idx(path)


def test_truncated_data(mode, tmp_path):
    path = tmp_path / "cut-images"
    path.write_bytes(raw_bytes(T10K_IMAGES)[: 16 + 784 * 3 + 5])
    with pytest.raises(MinicaffeError, match=r"cut-images: truncated IDX file.*7840000 data bytes, "
                                             r"file has 2357"):
        read_images(path)


def test_truncated_header(mode, tmp_path):
    path = tmp_path / "cut-header"
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(MinicaffeError, match="cut-header: truncated IDX file: header needs 16"):
        read_idx(path)


def test_truncated_gzip(mode, tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(T10K_LABELS.read_bytes()[:1000])
    with pytest.raises(MinicaffeError, match="cut.gz: corrupt or truncated gzip"):
        read_labels(path)


def test_trailing_bytes(mode, tmp_path):
    path = tmp_path / "long"
    path.write_bytes(raw_bytes(T10K_LABELS) + b"\x00")
    with pytest.raises(MinicaffeError, match="long: corrupt IDX file.*10000 data bytes, file has 10001"):
        read_labels(path)


def test_swapped_image_and_label_files(mode):
    with pytest.raises(MinicaffeError, match="incorrect image file magic 2049 .*expected 2051.*swapped"):
        read_images(T10K_LABELS)
    with pytest.raises(MinicaffeError, match="incorrect label file magic 2051 .*expected 2049"):
        read_labels(T10K_IMAGES)
