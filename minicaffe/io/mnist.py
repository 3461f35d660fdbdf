"""MNIST: Caffe's `convert_mnist_data` tool, and a download that checks what it gets.

`convert_mnist_data(images, labels, db)` writes exactly what Caffe's
`examples/mnist/convert_mnist_data.cpp` writes: one serialized `Datum` per digit
(channels 1, height 28, width 28, the 784 pixel bytes, the label) under the keys
"00000000", "00000001", ..., committed every 1,000 records. A Caffe build can read
our LMDB and we can read Caffe's.

`convert_mnist_siamese_data(images, labels, db)` writes the pair database of Caffe's
siamese example (two digits per 2-channel Datum, label 1 when they match).

`download_mnist(dest)` fetches the four canonical files from public mirrors, verifies
their md5 and renames each into place only once it is verified.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from minicaffe.common import MinicaffeError
from minicaffe.io.db import open_writer
from minicaffe.io.idx import read_images, read_labels
from minicaffe.log import progress as log_progress
from minicaffe.proto import caffe_pb2

log = logging.getLogger(__name__)

MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
# Caffe commits its LMDB transaction every 1,000 records.
COMMIT_EVERY = 1000


def convert_mnist_data(images_path, labels_path, db_path, backend: str = "lmdb", *,
                       overwrite: bool = False, limit: int | None = None,
                       progress: bool = True) -> int:
    """Convert an MNIST image/label IDX pair to an LMDB (or, with backend="leveldb", a
    LevelDB) of Datums; return the record count.

    `limit` converts only the first `limit` digits. With `progress`, a run of 10,000
    digits or more shows a tqdm bar while stderr is a terminal (`minicaffe.log.progress`).
    """
    if backend.lower() not in ("lmdb", "leveldb"):
        raise MinicaffeError(f"backend {backend!r} is not supported: use 'lmdb' or 'leveldb' "
                             f"(and the same `backend` in data_param)")
    images, labels = read_images(images_path), read_labels(labels_path)
    if len(images) != len(labels):
        raise MinicaffeError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                             f"{len(labels)} labels; they must be a matching pair")
    count = len(images) if limit is None else min(int(limit), len(images))
    _, rows, cols = images.shape
    log.info("Opening %s %s", backend.lower(), db_path)
    log.info("A total of %d items. Rows: %d Cols: %d", count, rows, cols)

    bar = (log_progress(count, desc=f"converting {Path(images_path).name}", unit="digit")
           if progress and count >= 10000 else contextlib.nullcontext())
    datum = caffe_pb2.Datum(channels=1, height=rows, width=cols)
    with open_writer(db_path, backend, commit_every=COMMIT_EVERY,
                     overwrite=overwrite) as db, bar as bar:
        for item_id in range(count):
            datum.data = images[item_id].tobytes()
            datum.label = int(labels[item_id])
            db.put(f"{item_id:08d}", datum.SerializeToString())
            if bar is not None:
                bar.update(1)
    log.info("Processed %d files.", count)
    return count


def convert_mnist_siamese_data(images_path, labels_path, db_path, *, seed: int = 0,
                               overwrite: bool = False, limit: int | None = None) -> int:
    """Write the pair database of Caffe's siamese example; return the record count.

    As `examples/siamese/convert_mnist_siamese_data.cpp` does: record k holds two digits
    drawn uniformly at random (with replacement) from the file, stacked as the two
    channels of one Datum (channels 2, height 28, width 28), with label 1 when the two
    digits are the same and 0 otherwise; keys are "%08d"; there are as many pairs as
    digits (or `limit`). Caffe writes a LevelDB with its own generator; this writes the
    same records to an LMDB with numpy's generator seeded by `seed`, so the pairs differ
    from Caffe's draw but follow the same law (about one pair in ten is similar).
    """
    images, labels = read_images(images_path), read_labels(labels_path)
    if len(images) != len(labels):
        raise MinicaffeError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                             f"{len(labels)} labels; they must be a matching pair")
    count = len(images) if limit is None else min(int(limit), len(images))
    _, rows, cols = images.shape
    rng = np.random.default_rng(seed)
    first, second = rng.integers(0, len(images), (2, count))
    datum = caffe_pb2.Datum(channels=2, height=rows, width=cols)
    with open_writer(db_path, "lmdb", commit_every=COMMIT_EVERY, overwrite=overwrite) as db:
        for item_id, (i, j) in enumerate(zip(first, second)):
            datum.data = images[i].tobytes() + images[j].tobytes()
            datum.label = int(labels[i] == labels[j])
            db.put(f"{item_id:08d}", datum.SerializeToString())
    log.info("Wrote %d pairs of %dx%d digits to %s", count, rows, cols, db_path)
    return count


def md5sum(path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _urlopen(url: str, timeout: float):
    """The one place that touches the network (tests replace it)."""
    return urllib.request.urlopen(url, timeout=timeout)


def download_mnist(dest_dir, mirrors=MIRRORS, files=None, timeout: float = 30.0) -> list[Path]:
    """Fetch the MNIST files into `dest_dir`; return their paths, in `files` order.

    A file already there with the right md5 is kept. Otherwise each mirror is tried in
    turn; a download lands in a temporary file that is renamed into place only when its
    md5 matches, and is deleted when it does not. `files` maps names to md5s
    (default: the four canonical files).
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    files = MNIST_FILES if files is None else files
    paths = []
    for name, md5 in files.items():
        target = dest / name
        if target.is_file():
            if md5sum(target) == md5:
                log.info("%s: present, md5 ok", target)
                paths.append(target)
                continue
            log.warning("%s: md5 does not match %s; downloading it again", target, md5)
        failures = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            try:
                _download_verified(url, target, md5, timeout)
            except _Md5Mismatch as err:
                failures.append(f"{url}: {err}")
                continue
            except OSError as err:  # URLError, HTTPError, timeouts, resets are all OSErrors
                failures.append(f"{url}: {getattr(err, 'reason', None) or err}")
                continue
            log.info("%s: downloaded from %s, md5 ok", target, url)
            break
        else:
            raise MinicaffeError(
                f"could not download {name} (md5 {md5}) into {dest}: "
                + "; ".join(failures)
                + ". If this machine is offline, copy the MNIST .gz files into that folder by "
                "hand (they are checked by md5, see data/mnist/README.md), or use the real "
                "10,000-digit train and test files shipped in data/mnist/.")
        paths.append(target)
    return paths


class _Md5Mismatch(Exception):
    pass


def _download_verified(url: str, target: Path, md5: str, timeout: float) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, _urlopen(url, timeout) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:
            raise _Md5Mismatch(f"md5 {digest.hexdigest()} does not match the expected {md5} "
                               f"(download deleted)")
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
