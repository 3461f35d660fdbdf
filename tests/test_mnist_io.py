"""convert_mnist_data (Caffe's tool, byte for byte) and download_mnist, offline.

The downloads never touch the network: the opener is replaced, or the mirror is a
closed port on this machine.
"""
import gzip
import io
import urllib.error
from pathlib import Path

import pytest

from minicaffe import log as mlog
from minicaffe.common import MinicaffeError
from minicaffe.io import mnist
from minicaffe.io.db import LMDBReader
from minicaffe.io.idx import read_images, read_labels, write_idx
from minicaffe.io.mnist import MNIST_FILES, convert_mnist_data, download_mnist, md5sum
from minicaffe.proto import caffe_pb2

REPO = Path(__file__).resolve().parents[1]
MNIST = next((d for d in (REPO / "data" / "mnist", REPO.parent / "shared" / "data" / "mnist")
              if (d / "t10k-images-idx3-ubyte.gz").is_file()), REPO / "data" / "mnist")
T10K_IMAGES = MNIST / "t10k-images-idx3-ubyte.gz"
T10K_LABELS = MNIST / "t10k-labels-idx1-ubyte.gz"
T10K = {name: md5 for name, md5 in MNIST_FILES.items() if name.startswith("t10k")}


def test_shipped_files_match_their_md5(mode):
    for name, md5 in T10K.items():
        assert md5sum(MNIST / name) == md5


def test_convert_writes_caffe_datums(mode, tmp_path):
    assert convert_mnist_data(T10K_IMAGES, T10K_LABELS, tmp_path / "db", limit=1500) == 1500
    images, labels = read_images(T10K_IMAGES), read_labels(T10K_LABELS)
    with LMDBReader(tmp_path / "db") as db:
        assert len(db) == 1500
        assert db.keys[:3] == [b"00000000", b"00000001", b"00000002"]
        assert db.keys[-1] == b"00001499"
        for k in (0, 999, 1000, 1499):
            key, value = db.read(k)
            datum = caffe_pb2.Datum.FromString(value)
            assert key == f"{k:08d}".encode()
            assert (datum.channels, datum.height, datum.width) == (1, 28, 28)
            assert datum.data == images[k].tobytes() and datum.label == labels[k]
            assert not datum.encoded and not datum.float_data
        # Caffe's exact wire bytes: channels=1, height=28, width=28, data (784 bytes), label=7.
        assert db.read(0)[1] == (b"\x08\x01\x10\x1c\x18\x1c\x22\x90\x06" + images[0].tobytes()
                                 + b"\x28\x07")


def test_convert_whole_file_and_label_zero(mode, tmp_path):
    assert convert_mnist_data(T10K_IMAGES, T10K_LABELS, tmp_path / "db", progress=False) == 10000
    labels = read_labels(T10K_LABELS)
    with LMDBReader(tmp_path / "db") as db:
        assert len(db) == 10000 and db.keys[-1] == b"00009999"
        k = int((labels == 0).argmax())  # label 0 is still written, as Caffe's set_label(0)
        assert db.read(k)[1].endswith(b"\x28\x00")


def test_convert_refuses_to_overwrite(mode, tmp_path):
    convert_mnist_data(T10K_IMAGES, T10K_LABELS, tmp_path / "db", limit=3)
    with pytest.raises(MinicaffeError, match="db: already exists; refusing to overwrite"):
        convert_mnist_data(T10K_IMAGES, T10K_LABELS, tmp_path / "db", limit=5)
    assert convert_mnist_data(T10K_IMAGES, T10K_LABELS, tmp_path / "db", limit=5,
                              overwrite=True) == 5
    assert len(LMDBReader(tmp_path / "db")) == 5


def test_convert_errors(mode, tmp_path):
    with pytest.raises(MinicaffeError, match="incorrect image file magic.*swapped"):
        convert_mnist_data(T10K_LABELS, T10K_IMAGES, tmp_path / "a")
    write_idx(tmp_path / "few-labels", read_labels(T10K_LABELS)[:9])
    with pytest.raises(MinicaffeError, match="10000 images but .*few-labels holds 9 labels"):
        convert_mnist_data(T10K_IMAGES, tmp_path / "few-labels", tmp_path / "b")
    with pytest.raises(MinicaffeError, match="'rocksdb' is not supported: use 'lmdb' or 'leveldb'"):
        convert_mnist_data(T10K_IMAGES, T10K_LABELS, tmp_path / "c", backend="rocksdb")
    with pytest.raises(MinicaffeError, match="missing-images: no such file"):
        convert_mnist_data(tmp_path / "missing-images", T10K_LABELS, tmp_path / "d")
    assert not any((tmp_path / n).exists() for n in "abcd")


def test_convert_shows_progress_on_a_terminal(mode, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(mlog, "progress_enabled", lambda stream=None: True)
    convert_mnist_data(T10K_IMAGES, T10K_LABELS, tmp_path / "db")
    assert "converting t10k-images-idx3-ubyte.gz" in capsys.readouterr().err
    convert_mnist_data(T10K_IMAGES, T10K_LABELS, tmp_path / "small", limit=100)
    assert "converting" not in capsys.readouterr().err  # short runs stay quiet


# ---------------------------------------------------------------- download

def serve(files: dict, calls: list | None = None):
    """An opener that serves `files` (url basename -> bytes) and 404s anything else."""
    def opener(url, timeout):
        if calls is not None:
            calls.append(url)
        name = url.rsplit("/", 1)[-1]
        if name not in files:
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
        return io.BytesIO(files[name])
    return opener


def offline(url, timeout):
    raise urllib.error.URLError(OSError(101, "Network is unreachable"))


def test_download_offline_is_one_clear_paragraph(mode, tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "_urlopen", offline)
    with pytest.raises(MinicaffeError) as err:
        download_mnist(tmp_path / "mnist")
    message = str(err.value)
    assert "\n" not in message
    assert "could not download train-images-idx3-ubyte.gz" in message
    assert "Network is unreachable" in message and "offline" in message
    for mirror in mnist.MIRRORS:
        assert mirror in message
    assert list((tmp_path / "mnist").iterdir()) == []  # no partial files left


def test_download_unreachable_url(mode, tmp_path):
    # Port 9 (discard) on this machine: refused at once, no network involved.
    with pytest.raises(MinicaffeError, match="could not download t10k-images.*127.0.0.1:9"):
        download_mnist(tmp_path, mirrors=["http://127.0.0.1:9/mnist/"], files=T10K, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_download_md5_mismatch_deletes(mode, tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "_urlopen", serve({name: b"<html>captive portal</html>"
                                                  for name in T10K}))
    with pytest.raises(MinicaffeError, match="t10k-images.*md5 [0-9a-f]{32} does not match the "
                                             "expected 9fb629c4189551a2d022fa330f9573f3"):
        download_mnist(tmp_path, files=T10K)
    assert list(tmp_path.iterdir()) == []


def test_download_verifies_falls_back_and_skips(mode, tmp_path, monkeypatch):
    real = {name: (MNIST / name).read_bytes() for name in T10K}
    calls = []
    first_broken = serve({}, calls)
    second_good = serve(real, calls)
    monkeypatch.setattr(mnist, "_urlopen",
                        lambda url, timeout: (first_broken if "bad" in url else second_good)(url, timeout))
    paths = download_mnist(tmp_path, mirrors=["https://bad.example/", "https://good.example/m"],
                           files=T10K)
    assert paths == [tmp_path / name for name in T10K]
    assert calls == ["https://bad.example/t10k-images-idx3-ubyte.gz",
                     "https://good.example/m/t10k-images-idx3-ubyte.gz",
                     "https://bad.example/t10k-labels-idx1-ubyte.gz",
                     "https://good.example/m/t10k-labels-idx1-ubyte.gz"]
    assert all(p.read_bytes() == real[p.name] for p in paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(T10K)  # no temp files
    assert read_labels(paths[1])[0] == 7

    # Present with the right md5: nothing is fetched.
    monkeypatch.setattr(mnist, "_urlopen", offline)
    assert download_mnist(tmp_path, files=T10K) == paths


def test_download_replaces_a_corrupt_local_file(mode, tmp_path, monkeypatch):
    name = "t10k-labels-idx1-ubyte.gz"
    (tmp_path / name).write_bytes(gzip.compress(b"garbage"))
    monkeypatch.setattr(mnist, "_urlopen", serve({name: (MNIST / name).read_bytes()}))
    download_mnist(tmp_path, files={name: T10K[name]})
    assert md5sum(tmp_path / name) == T10K[name]
