"""Key-value databases of serialized Datums, as Caffe's `util/db_lmdb.cpp` keeps them.

Caffe's Data layer reads an LMDB (a directory holding `data.mdb` and `lock.mdb`) whose
keys are zero-padded record numbers (`"%08d"` for MNIST) and whose values are serialized
`caffe_pb2.Datum` messages. LMDB keeps keys sorted, so "record k" is the k-th key in
byte order, which for `"%08d"` keys is the k-th record written.

* `LMDBWriter` puts records and commits them in chunks (Caffe commits every 1,000), and
  grows the memory map when it is full, as Caffe's LMDBTransaction does.
* `LMDBReader` reads record k by position and iterates cyclically from any position;
  positional access is what lets a resumed solver ask for "batch k" directly.
* `LevelDBWriter` / `LevelDBReader` do the same for LevelDB (Caffe's `util/db_leveldb.cpp`,
  the default `backend` of data_param), through the `plyvel` binding. LevelDB also keeps
  keys in byte order, so positions mean the same thing for both backends.
* `open_db` is what the Data layer calls: it checks `backend` and the source path and
  names the layer in its errors.
"""
from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import lmdb

from minicaffe.common import MinicaffeError
from minicaffe.proto import caffe_pb2

try:
    import plyvel
except ImportError:  # plyvel is a dependency; an install without it still reads LMDB
    plyvel = None

# LMDB wants its maximum size up front. Like Caffe's LMDBTransaction, start modest and
# double the map whenever a commit finds it full.
INITIAL_MAP_SIZE = 64 << 20

# LMDB forbids opening one environment twice in a process, yet a train net and a test
# net may read the same source: readers share one read-only environment per data file.
_SHARED: dict[tuple, list] = {}  # (st_dev, st_ino) of data.mdb -> [environment, users]
_SHARED_LOCK = threading.Lock()


def _acquire(shared: dict, ident: tuple, open_handle):
    """One more user of the handle `shared` keeps for `ident`, opened on first use."""
    with _SHARED_LOCK:
        entry = shared.get(ident)
        if entry is None:
            entry = shared[ident] = [open_handle(), 0]
        entry[1] += 1
        return entry[0]


def _release(shared: dict, ident: tuple) -> None:
    """One user fewer; the last one closes the handle."""
    with _SHARED_LOCK:
        entry = shared.get(ident)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                entry[0].close()
                del shared[ident]


def _file_id(path: Path) -> tuple:
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def _key_bytes(key) -> bytes:
    return key.encode() if isinstance(key, str) else bytes(key)


def is_lmdb(path) -> bool:
    """True when `path` is an LMDB directory (it holds data.mdb)."""
    return (Path(path) / "data.mdb").is_file()


def is_leveldb(path) -> bool:
    """True when `path` is a LevelDB directory (it holds the CURRENT manifest pointer)."""
    return (Path(path) / "CURRENT").is_file()


class _Writer:
    """What both writers share: refuse an existing path unless `overwrite`, and then only
    replace a directory of the same kind, so a typo cannot delete unrelated files; collect
    records and write them `commit_every` at a time; on a failure inside `with`, remove
    the half-written database."""

    kind = ""  # "an LMDB", "a LevelDB": for the messages

    @staticmethod
    def is_kind(path) -> bool:
        raise NotImplementedError

    def __init__(self, path, commit_every: int, overwrite: bool):
        self.path = Path(path)
        if self.path.exists():
            if not overwrite:
                raise MinicaffeError(f"{self.path}: already exists; refusing to overwrite it "
                                     f"(remove it first, or pass overwrite=True)")
            if not (self.path.is_dir() and self.is_kind(self.path)):
                raise MinicaffeError(f"{self.path}: exists and is not {self.kind} directory; "
                                     f"refusing to replace it")
            shutil.rmtree(self.path)
        self.commit_every = int(commit_every)
        self._pending: list[tuple[bytes, bytes]] = []
        self.count = 0
        self.db = None  # the open database, set by the subclass

    def put(self, key, value: bytes) -> None:
        self._pending.append((_key_bytes(key), bytes(value)))
        self.count += 1
        if len(self._pending) >= self.commit_every:
            self.commit()

    def commit(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self.db is not None:
            self.commit()
            self.db.close()
            self.db = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:  # leave no half-written database behind a failed conversion
            self.db.close()
            self.db = None
            shutil.rmtree(self.path, ignore_errors=True)


class LMDBWriter(_Writer):
    """Write key/value records to a new LMDB, committing every `commit_every` records."""

    kind = "an LMDB"
    is_kind = staticmethod(is_lmdb)

    def __init__(self, path, commit_every: int = 1000, overwrite: bool = False):
        super().__init__(path, commit_every, overwrite)
        self.path.mkdir(parents=True)
        self.db = lmdb.open(str(self.path), map_size=INITIAL_MAP_SIZE, subdir=True)

    def commit(self) -> None:
        """Write the pending records in one transaction, doubling the map if it is full."""
        while self._pending:
            try:
                with self.db.begin(write=True) as txn:
                    for key, value in self._pending:
                        txn.put(key, value)
                self._pending.clear()
            except lmdb.MapFullError:
                self.db.set_mapsize(self.db.info()["map_size"] * 2)


class _Reader:
    """What both readers share: positional access over the keys listed at open, cyclic
    iteration, and giving the shared handle back when closed or dropped."""

    _shared: dict = {}  # the subclass's registry of shared handles
    _ident = None

    def __len__(self) -> int:
        return len(self.keys)

    def read(self, k: int) -> tuple[bytes, bytes]:
        """(key, value) of record k, 0 <= k < len(self)."""
        return self.read_many([k])[0]

    def read_many(self, positions) -> list[tuple[bytes, bytes]]:
        raise NotImplementedError

    def cycle(self, start: int = 0):
        """Yield (key, value) from record `start` on, wrapping to the first record at the end."""
        k = start % len(self)
        while True:
            yield self.read(k)
            k = (k + 1) % len(self)

    def close(self) -> None:
        if self._ident is not None:
            _release(self._shared, self._ident)
            self._ident = None

    def __del__(self):
        # A dropped reader (a Data layer's, say) gives its share of the handle back;
        # otherwise every net built in a long process would keep a file and a map open.
        if getattr(self, "_ident", None) is not None:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LMDBReader(_Reader):
    """Read-only, positional access to an LMDB: record k is the k-th key in sorted order.

    The keys are listed once at open (8 bytes each for Caffe's keys), which makes
    `read(k)` one B-tree lookup and resuming at any batch free.
    `owner` (e.g. "Data layer 'mnist'") prefixes error messages.
    """

    _shared = _SHARED

    def __init__(self, path, owner: str = ""):
        self.path = Path(path)
        where = f"{owner}: " if owner else ""
        if not self.path.exists():
            raise MinicaffeError(f"{where}data source {str(self.path)!r} does not exist "
                                 f"(convert your data to LMDB first, e.g. with "
                                 f"minicaffe.io.mnist.convert_mnist_data)")
        if not is_lmdb(self.path):
            hint = (" It looks like a LevelDB: set `backend: LEVELDB` in data_param."
                    if is_leveldb(self.path) else "")
            raise MinicaffeError(f"{where}data source {str(self.path)!r} is not an LMDB "
                                 f"directory (no data.mdb inside).{hint}")
        try:
            ident = _file_id(self.path / "data.mdb")
            # lock=False, as Caffe's MDB_RDONLY readers: nothing writes a source while we
            # train, and a read-only folder (a shared data set) still opens.
            self.env = _acquire(_SHARED, ident, lambda: lmdb.open(
                str(self.path), readonly=True, lock=False, subdir=True))
            self._ident = ident
            with self.env.begin() as txn:
                self.keys: list[bytes] = list(txn.cursor().iternext(keys=True, values=False))
        except lmdb.Error as err:
            self.close()
            raise MinicaffeError(f"{where}cannot read LMDB {str(self.path)!r}: {err}") from None
        if not self.keys:
            self.close()
            raise MinicaffeError(f"{where}LMDB {str(self.path)!r} holds no records")

    def read_many(self, positions) -> list[tuple[bytes, bytes]]:
        """(key, value) of each record position, in one read transaction."""
        with self.env.begin(buffers=False) as txn:
            return [(self.keys[k], txn.get(self.keys[k])) for k in positions]


# ---- LevelDB
# LevelDB locks its directory: a second open in the same process fails. A train net and a
# test net may read one source, so readers share one handle per directory, as for LMDB.
_SHARED_LEVELDB: dict[tuple, list] = {}  # (st_dev, st_ino) of the directory -> [db, users]


def _need_plyvel(where: str) -> None:
    if plyvel is None:
        raise MinicaffeError(f"{where}reading or writing LevelDB needs the plyvel package "
                             f"(pip install plyvel), or convert the data to LMDB")


class LevelDBWriter(_Writer):
    """Write key/value records to a new LevelDB, in write batches of `commit_every` records.

    Caffe's converters create the database with error_if_exists, as here.
    """

    kind = "a LevelDB"
    is_kind = staticmethod(is_leveldb)

    def __init__(self, path, commit_every: int = 1000, overwrite: bool = False):
        _need_plyvel("")
        super().__init__(path, commit_every, overwrite)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Caffe opens with a 256 MB write buffer; plyvel's default (4 MB) only changes
        # how often LevelDB compacts, not what it stores.
        self.db = plyvel.DB(str(self.path), create_if_missing=True, error_if_exists=True)

    def commit(self) -> None:
        """Write the pending records in one atomic batch."""
        if self._pending:
            with self.db.write_batch() as batch:
                for key, value in self._pending:
                    batch.put(key, value)
            self._pending.clear()


class LevelDBReader(_Reader):
    """Read-only, positional access to a LevelDB; the same interface as `LMDBReader`.

    Record k is the k-th key in byte order (LevelDB's default comparator, which is what
    Caffe's iterator walks). The keys are listed once at open.
    """

    _shared = _SHARED_LEVELDB

    def __init__(self, path, owner: str = ""):
        self.path = Path(path)
        where = f"{owner}: " if owner else ""
        _need_plyvel(where)
        if not self.path.exists():
            raise MinicaffeError(f"{where}data source {str(self.path)!r} does not exist")
        if not is_leveldb(self.path):
            hint = (" It looks like an LMDB: set `backend: LMDB` in data_param (Caffe's "
                    "default backend is LEVELDB)." if is_lmdb(self.path) else "")
            raise MinicaffeError(f"{where}data source {str(self.path)!r} is not a LevelDB "
                                 f"directory (no CURRENT file inside).{hint}")
        ident = _file_id(self.path)
        try:
            self.db = _acquire(_SHARED_LEVELDB, ident, lambda: plyvel.DB(str(self.path)))
            self._ident = ident
            self.keys: list[bytes] = list(self.db.iterator(include_value=False))
        except plyvel.Error as err:
            self.close()
            raise MinicaffeError(f"{where}cannot read LevelDB {str(self.path)!r}: {err}") from None
        if not self.keys:
            self.close()
            raise MinicaffeError(f"{where}LevelDB {str(self.path)!r} holds no records")

    def read_many(self, positions) -> list[tuple[bytes, bytes]]:
        """(key, value) of each record position, from one consistent snapshot."""
        snapshot = self.db.snapshot()
        try:
            return [(self.keys[k], snapshot.get(self.keys[k])) for k in positions]
        finally:
            snapshot.close()


def _backend_value(backend, where: str) -> int:
    if isinstance(backend, str):
        try:
            return caffe_pb2.DataParameter.DB.Value(backend.upper())
        except ValueError:
            raise MinicaffeError(f"{where}unknown backend {backend!r}; use LMDB or "
                                 f"LEVELDB") from None
    return backend


def open_writer(path, backend="lmdb", commit_every: int = 1000, overwrite: bool = False):
    """A new database for writing: an `LMDBWriter` or a `LevelDBWriter` by `backend`
    (a DataParameter.DB value or its name, "lmdb" / "leveldb", as Caffe's --backend)."""
    if _backend_value(backend, "") == caffe_pb2.DataParameter.LEVELDB:
        return LevelDBWriter(path, commit_every=commit_every, overwrite=overwrite)
    return LMDBWriter(path, commit_every=commit_every, overwrite=overwrite)


def open_db(source, backend, owner: str = ""):
    """Open a Data layer's source; `backend` is a DataParameter.DB value or its name.

    Returns an `LMDBReader` or a `LevelDBReader` (the same interface)."""
    where = f"{owner}: " if owner else ""
    if _backend_value(backend, where) == caffe_pb2.DataParameter.LEVELDB:
        return LevelDBReader(source, owner=owner)
    return LMDBReader(source, owner=owner)
