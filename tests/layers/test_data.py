"""Data layer on a real MNIST slice converted to LMDB: contents, cycling, resume, errors."""
import io
import logging
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minicaffe import common
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.io.db import LMDBWriter
from minicaffe.io.idx import read_images, read_labels
from minicaffe.io.mnist import convert_mnist_data
from minicaffe.layer import create_layer
from minicaffe.proto import caffe_pb2
from tests.strategies import layer_param

REPO = Path(__file__).resolve().parents[2]
MNIST = next((d for d in (REPO / "data" / "mnist", REPO.parent / "shared" / "data" / "mnist")
              if (d / "t10k-images-idx3-ubyte.gz").is_file()), REPO / "data" / "mnist")
N = 50  # records in the test database
SCALE = np.float32(0.00390625)


@pytest.fixture(scope="module")
def mnist_db(tmp_path_factory):
    """The first 50 official test digits as Caffe's LMDB, and the same digits from IDX."""
    path = tmp_path_factory.mktemp("data") / "mnist_test_lmdb"
    images = MNIST / "t10k-images-idx3-ubyte.gz"
    labels = MNIST / "t10k-labels-idx1-ubyte.gz"
    convert_mnist_data(images, labels, path, limit=N)
    return str(path), read_images(images)[:N], read_labels(labels)[:N]


def data_layer(source, batch_size=16, tops=2, phase=caffe_pb2.TRAIN, transform=None, **data):
    param = layer_param("Data", name="mnist",
                        data_param={"source": source, "batch_size": batch_size, "backend": "LMDB",
                                    **data},
                        transform_param=transform if transform is not None else {"scale": 0.00390625})
    param.phase = phase
    layer = create_layer(param)
    top = [Blob() for _ in range(tops)]
    layer.setup([], top)
    return layer, top


def forward(layer, top):
    layer.forward([], top)
    return [blob.cpu_data().copy() for blob in top]


def expected(mnist_db, batch_index, batch_size=16):
    _, images, labels = mnist_db
    records = (batch_index * batch_size + np.arange(batch_size)) % N
    return images[records][:, None].astype(np.float32) * SCALE, labels[records].astype(np.float32)


def test_batches_are_the_idx_digits_scaled(mode, mnist_db):
    layer, top = data_layer(mnist_db[0])
    assert top[0].shape == (16, 1, 28, 28) and top[1].shape == (16,)
    data, labels = forward(layer, top)
    want_data, want_labels = expected(mnist_db, 0)
    np.testing.assert_array_equal(data, want_data)
    np.testing.assert_array_equal(labels, want_labels)
    assert labels[0] == 7 and data.dtype == np.float32 and 0 <= data.min() and data.max() < 1
    layer.stop_prefetch()


def test_leveldb_source_gives_the_same_batches(mode, mnist_db, tmp_path):
    # The same 50 digits written as a LevelDB, read with data_param's default backend
    # (LEVELDB), wrapping at the end like the LMDB.
    path = tmp_path / "mnist_test_leveldb"
    convert_mnist_data(MNIST / "t10k-images-idx3-ubyte.gz", MNIST / "t10k-labels-idx1-ubyte.gz",
                       path, backend="leveldb", limit=N)
    param = layer_param("Data", name="mnist", data_param={"source": str(path), "batch_size": 16},
                        transform_param={"scale": 0.00390625})
    assert param.data_param.backend == caffe_pb2.DataParameter.LEVELDB
    layer = create_layer(param)
    top = [Blob(), Blob()]
    layer.setup([], top)
    for k in range(4):  # batch 3 = records 48, 49, 0, ..., 13
        data, labels = forward(layer, top)
        want_data, want_labels = expected(mnist_db, k)
        np.testing.assert_array_equal(data, want_data)
        np.testing.assert_array_equal(labels, want_labels)
    layer.stop_prefetch()


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_reading_cycles_at_the_end(mode, mnist_db):
    # The minicaffe logger does not propagate to the root (so no caplog): listen directly.
    logger, handler = logging.getLogger("minicaffe.layers.data"), ListHandler()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        layer, top = data_layer(mnist_db[0], prefetch=0)
        batches = [forward(layer, top) for _ in range(8)]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    for k, (data, labels) in enumerate(batches):  # batch 3 = records 48, 49, 0, ..., 13
        want_data, want_labels = expected(mnist_db, k)
        np.testing.assert_array_equal(data, want_data)
        np.testing.assert_array_equal(labels, want_labels)
    # 8 batches of 16 = 128 records of 50: the reader passes the end twice.
    restarts = [r for r in handler.records
                if "Restarting data prefetching from start." in r.getMessage()]
    assert len(restarts) == 2 and all(r.levelno == logging.DEBUG for r in restarts)


def test_set_batch_index(mode, mnist_db):
    layer, top = data_layer(mnist_db[0])
    forward(layer, top)
    for k in (2, 0, 100, 3):
        layer.set_batch_index(k)
        data, labels = forward(layer, top)
        np.testing.assert_array_equal(data, expected(mnist_db, k)[0])
        np.testing.assert_array_equal(labels, expected(mnist_db, k)[1])
        np.testing.assert_array_equal(forward(layer, top)[1], expected(mnist_db, k + 1)[1])
    layer.stop_prefetch()


@pytest.mark.parametrize("prefetch", [0, 1, 4])
def test_resume_equals_straight_run_with_random_crop_and_mirror(mode, mnist_db, prefetch):
    """train 7 batches == train 3, rebuild the layer (a resumed solver), seek to 3, train 4."""
    transform = {"scale": 0.00390625, "crop_size": 24, "mirror": True}

    def build():
        common.set_random_seed(1701)
        return data_layer(mnist_db[0], batch_size=13, transform=transform, prefetch=prefetch)

    layer, top = build()
    assert top[0].shape == (13, 1, 24, 24)
    straight = [forward(layer, top) for _ in range(7)]
    layer.stop_prefetch()
    first, top1 = build()
    part = [forward(first, top1) for _ in range(3)]
    first.stop_prefetch()
    second, top2 = build()
    second.set_batch_index(3)
    part += [forward(second, top2) for _ in range(4)]
    second.stop_prefetch()
    for (a, la), (b, lb) in zip(straight, part):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    # The crops really are random: not every item is the centre crop.
    images = expected(mnist_db, 0, 13)[0]
    assert not np.array_equal(straight[0][0], images[:, :, 2:26, 2:26])


def test_test_phase_centre_crop_and_deprecated_data_param(mode, mnist_db):
    # data_param's old scale/crop_size fields are moved into transform_param, as in Caffe.
    layer, top = data_layer(mnist_db[0], batch_size=5, phase=caffe_pb2.TEST, transform={},
                            scale=0.5, crop_size=20)
    data, _ = forward(layer, top)
    images = mnist_db[1][:5, None].astype(np.float32)
    np.testing.assert_array_equal(data, images[:, :, 4:24, 4:24] * np.float32(0.5))
    layer.stop_prefetch()


def test_data_only_top_and_no_backward(mode, mnist_db):
    layer, top = data_layer(mnist_db[0], batch_size=4, tops=1)
    (data,) = forward(layer, top)
    np.testing.assert_array_equal(data, expected(mnist_db, 0, 4)[0])
    layer.backward(top, [], [])  # nothing to do, and no error
    assert layer.allow_force_backward(0) is False and layer.blobs == []
    layer.stop_prefetch()


def test_rand_skip_offsets_every_batch(mode, mnist_db):
    common.set_random_seed(5)
    layer, top = data_layer(mnist_db[0], batch_size=8, rand_skip=30)
    assert 0 <= layer.skip < 30
    _, labels = forward(layer, top)
    np.testing.assert_array_equal(labels, mnist_db[2][(layer.skip + np.arange(8)) % N])
    layer.set_batch_index(6)
    _, labels = forward(layer, top)
    np.testing.assert_array_equal(labels, mnist_db[2][(layer.skip + 48 + np.arange(8)) % N])
    layer.stop_prefetch()


def test_prefetch_thread_is_bounded_daemon_and_stops(mode, mnist_db):
    layer, top = data_layer(mnist_db[0], batch_size=2, prefetch=3)
    thread = layer._thread
    assert thread.daemon and thread.is_alive()
    for _ in range(50):
        if layer._queue.full():
            break
        threading.Event().wait(0.02)
    assert layer._queue.qsize() == 3  # reads ahead, but no more than `prefetch` batches
    layer.stop_prefetch()
    assert not thread.is_alive()
    layer.set_batch_index(0)  # a dropped layer stops its thread (it is no longer referenced)
    thread = layer._thread
    del layer, top
    thread.join(timeout=5)
    assert not thread.is_alive()


def write_db(path, datums):
    with LMDBWriter(path) as db:
        for k, datum in enumerate(datums):
            db.put(f"{k:08d}", datum if isinstance(datum, bytes) else datum.SerializeToString())
    return str(path)


def test_encoded_and_float_datums(mode, mnist_db, tmp_path):
    _, images, labels = mnist_db

    def png(image):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        return buffer.getvalue()

    encoded = write_db(tmp_path / "png", [caffe_pb2.Datum(data=png(im), encoded=True, label=int(lb))
                                          for im, lb in zip(images[:6], labels)])
    layer, top = data_layer(encoded, batch_size=6, transform={})
    data, got_labels = forward(layer, top)
    np.testing.assert_array_equal(data, images[:6, None])
    np.testing.assert_array_equal(got_labels, labels[:6])
    layer.stop_prefetch()

    floats = write_db(tmp_path / "float", [
        caffe_pb2.Datum(channels=1, height=28, width=28, label=int(lb),
                        float_data=(im.astype(np.float32) / 255).ravel().tolist())
        for im, lb in zip(images[:6], labels)])
    layer, top = data_layer(floats, batch_size=3, transform={"scale": 2.0})
    data, _ = forward(layer, top)
    np.testing.assert_allclose(data[:, 0], images[:3] / 255 * 2, rtol=1e-6)
    layer.stop_prefetch()


@pytest.mark.parametrize("prefetch", [0, 2])
def test_record_of_another_shape_is_named(mode, tmp_path, prefetch):
    good = caffe_pb2.Datum(channels=1, height=4, width=4, data=bytes(16))
    odd = caffe_pb2.Datum(channels=1, height=3, width=4, data=bytes(12))
    source = write_db(tmp_path / "db", [good, good, good, odd, good])
    layer, top = data_layer(source, batch_size=2, prefetch=prefetch)
    forward(layer, top)  # records 0, 1
    for _ in range(2):  # the failure repeats instead of hanging
        with pytest.raises(MinicaffeError, match=r"Data layer 'mnist': reading batch 1 .*record "
                                                 r"'00000003' .* is 1x3x4 .* first record is 1x4x4"):
            forward(layer, top)
    layer.stop_prefetch()


def test_corrupt_record_is_named(mode, tmp_path):
    good = caffe_pb2.Datum(channels=1, height=2, width=2, data=bytes(4))
    source = write_db(tmp_path / "db", [good, b"\xff\xff\xff"])
    layer, top = data_layer(source, batch_size=1)
    forward(layer, top)
    with pytest.raises(MinicaffeError, match="record '00000001' .* is not a serialized Datum"):
        forward(layer, top)
    layer.stop_prefetch()


def test_setup_errors(mode, mnist_db, tmp_path):
    with pytest.raises(MinicaffeError, match=r"Data layer 'mnist': data source '.*/missing_lmdb' "
                                             r"does not exist"):
        data_layer(str(tmp_path / "missing_lmdb"))
    param = layer_param("Data", name="mnist", data_param={"source": mnist_db[0], "batch_size": 4})
    with pytest.raises(MinicaffeError, match="Data layer 'mnist': data source .* is not a LevelDB.*"
                                             "set `backend: LMDB`"):
        create_layer(param).setup([], [Blob(), Blob()])
    with pytest.raises(MinicaffeError, match="batch_size must be positive"):
        data_layer(mnist_db[0], batch_size=0)
    with pytest.raises(MinicaffeError, match="crop_size 29 is larger than the 28x28 image"):
        data_layer(mnist_db[0], transform={"crop_size": 29})
    with pytest.raises(MinicaffeError, match="takes at most 2 top"):
        data_layer(mnist_db[0], tops=3)
