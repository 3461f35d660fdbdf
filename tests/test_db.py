"""LMDB writer and positional reader: order, cycling, chunked commits, growth, errors."""
import itertools

import pytest

from minicaffe.common import MinicaffeError
from minicaffe.io import db as dbmod
from minicaffe.io.db import (LevelDBReader, LevelDBWriter, LMDBReader, LMDBWriter, is_leveldb,
                             is_lmdb, open_db, open_writer)
from minicaffe.proto import caffe_pb2


def write(path, records, **kwargs):
    with LMDBWriter(path, **kwargs) as writer:
        for key, value in records:
            writer.put(key, value)
    return path


def test_round_trip_in_key_order(mode, tmp_path):
    records = [(f"{k:08d}", f"value {k}".encode()) for k in range(30)]
    path = write(tmp_path / "db", records, commit_every=7)
    assert is_lmdb(path)
    with LMDBReader(path) as reader:
        assert len(reader) == 30
        assert reader.read(0) == (b"00000000", b"value 0")
        assert reader.read(29) == (b"00000029", b"value 29")
        assert reader.read_many([3, 1, 3]) == [(b"00000003", b"value 3"), (b"00000001", b"value 1"),
                                               (b"00000003", b"value 3")]


def test_position_is_sorted_key_order(mode, tmp_path):
    # Written out of order, read back by sorted key: Caffe's cursor order.
    path = write(tmp_path / "db", [("b", b"2"), ("c", b"3"), ("a", b"1")])
    with LMDBReader(path) as reader:
        assert [reader.read(k) for k in range(3)] == [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]


def test_cycle_wraps_to_the_first_record(mode, tmp_path):
    path = write(tmp_path / "db", [(f"{k:08d}", bytes([k])) for k in range(5)])
    with LMDBReader(path) as reader:
        values = [v[0] for _, v in itertools.islice(reader.cycle(start=3), 9)]
    assert values == [3, 4, 0, 1, 2, 3, 4, 0, 1]


def test_chunked_commits_are_visible_before_close(mode, tmp_path):
    writer = LMDBWriter(tmp_path / "db", commit_every=4)
    for k in range(10):
        writer.put(f"{k:08d}", b"x")
    # 8 records are committed in two chunks of 4; 2 wait for close().
    assert writer.db.stat()["entries"] == 8
    writer.close()
    assert len(LMDBReader(tmp_path / "db")) == 10


def test_map_grows_when_full(mode, tmp_path, monkeypatch):
    monkeypatch.setattr(dbmod, "INITIAL_MAP_SIZE", 1 << 16)
    values = [bytes([k]) * 50_000 for k in range(12)]  # 600 kB into a 64 kB map
    path = write(tmp_path / "db", [(f"{k:08d}", v) for k, v in enumerate(values)], commit_every=5)
    with LMDBReader(path) as reader:
        assert [reader.read(k)[1] for k in range(12)] == values


def test_refuses_to_overwrite(mode, tmp_path):
    path = write(tmp_path / "db", [("a", b"old")])
    with pytest.raises(MinicaffeError, match="db: already exists; refusing to overwrite"):
        LMDBWriter(path)
    write(path, [("b", b"new")], overwrite=True)
    with LMDBReader(path) as reader:
        assert len(reader) == 1 and reader.read(0) == (b"b", b"new")


def test_overwrite_never_deletes_a_non_lmdb_folder(mode, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "keep.jpg").write_bytes(b"precious")
    with pytest.raises(MinicaffeError, match="photos: exists and is not an LMDB"):
        LMDBWriter(folder, overwrite=True)
    assert (folder / "keep.jpg").read_bytes() == b"precious"


def test_failed_write_leaves_nothing(mode, tmp_path):
    with pytest.raises(ValueError):
        with LMDBWriter(tmp_path / "db") as writer:
            writer.put("a", b"1")
            raise ValueError("conversion failed")
    assert not (tmp_path / "db").exists()


def test_readers_share_one_environment(mode, tmp_path):
    # LMDB refuses a second open in one process; train and test nets may share a source.
    path = write(tmp_path / "db", [("a", b"1")])
    first, second = LMDBReader(path), LMDBReader(path)
    assert first.env is second.env
    first.close()
    assert second.read(0) == (b"a", b"1")
    second.close()
    with LMDBReader(path) as third:  # reopened after the last reader closed
        assert third.read(0) == (b"a", b"1")


def test_recreated_database_is_read_fresh(mode, tmp_path):
    path = write(tmp_path / "db", [("a", b"old")])
    old = LMDBReader(path)
    write(path, [("a", b"new")], overwrite=True)
    with LMDBReader(path) as new:
        assert new.read(0) == (b"a", b"new")
    old.close()


def test_missing_source_names_owner_and_path(mode, tmp_path):
    with pytest.raises(MinicaffeError, match=r"Data layer 'mnist': data source '.*/nowhere_lmdb' "
                                             r"does not exist"):
        open_db(tmp_path / "nowhere_lmdb", "LMDB", owner="Data layer 'mnist'")


def test_not_an_lmdb(mode, tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(MinicaffeError, match="folder' is not an LMDB directory"):
        LMDBReader(tmp_path / "folder")


def test_empty_lmdb(mode, tmp_path):
    with LMDBWriter(tmp_path / "db"):
        pass
    with pytest.raises(MinicaffeError, match="holds no records"):
        LMDBReader(tmp_path / "db")


def write_leveldb(path, records, **kwargs):
    with LevelDBWriter(path, **kwargs) as writer:
        for key, value in records:
            writer.put(key, value)
    return path


def test_leveldb_round_trip_in_key_order(mode, tmp_path):
    # Written out of order over several write batches; read back in byte order of keys.
    records = [(f"{k:08d}", f"value {k}".encode()) for k in (5, 3, 9, 0, 1, 7, 2, 8, 6, 4)]
    path = write_leveldb(tmp_path / "db", records, commit_every=3)
    assert is_leveldb(path) and not is_lmdb(path)
    with LevelDBReader(path) as reader:
        assert len(reader) == 10
        assert [reader.read(k) for k in range(10)] == [(f"{k:08d}".encode(), f"value {k}".encode())
                                                       for k in range(10)]
        assert reader.read_many([3, 1]) == [(b"00000003", b"value 3"), (b"00000001", b"value 1")]
        assert [v for _, v in itertools.islice(reader.cycle(start=8), 4)] == \
            [b"value 8", b"value 9", b"value 0", b"value 1"]


def test_leveldb_opened_twice_in_one_process(mode, tmp_path):
    # LevelDB locks its folder; a train and a test net reading one source share a handle.
    path = write_leveldb(tmp_path / "db", [("a", b"1")])
    first, second = LevelDBReader(path), LevelDBReader(path)
    assert first.read(0) == second.read(0) == (b"a", b"1")
    first.close()
    assert second.read(0) == (b"a", b"1")  # still open for the other reader
    second.close()
    assert not dbmod._SHARED_LEVELDB
    assert len(LevelDBReader(path)) == 1  # reopens after the last user closed it


def test_leveldb_writer_refuses_to_clobber(mode, tmp_path):
    path = write_leveldb(tmp_path / "db", [("a", b"1")])
    with pytest.raises(MinicaffeError, match="already exists; refusing to overwrite"):
        LevelDBWriter(path)
    write_leveldb(path, [("b", b"2")], overwrite=True)
    with LevelDBReader(path) as reader:
        assert reader.read_many([0]) == [(b"b", b"2")]
    (tmp_path / "file").write_text("x")
    with pytest.raises(MinicaffeError, match="exists and is not a LevelDB directory"):
        LevelDBWriter(tmp_path / "file", overwrite=True)
    with pytest.raises(RuntimeError):  # a failed conversion leaves nothing behind
        with LevelDBWriter(tmp_path / "half") as writer:
            writer.put("a", b"1")
            raise RuntimeError
    assert not (tmp_path / "half").exists()


def test_leveldb_errors(mode, tmp_path):
    with pytest.raises(MinicaffeError, match="Data layer 'x': data source .*nowhere' does not"):
        open_db(tmp_path / "nowhere", "leveldb", owner="Data layer 'x'")
    write_leveldb(tmp_path / "empty", [])
    with pytest.raises(MinicaffeError, match="LevelDB .*empty' holds no records"):
        LevelDBReader(tmp_path / "empty")
    (tmp_path / "folder").mkdir()
    with pytest.raises(MinicaffeError, match="folder' is not a LevelDB directory"):
        LevelDBReader(tmp_path / "folder")


def test_backend_mismatch_gets_advice(mode, tmp_path):
    lmdb_path = write(tmp_path / "mnist_lmdb", [("a", b"1")])
    leveldb_path = write_leveldb(tmp_path / "mnist_leveldb", [("a", b"1")])
    # Caffe's default backend is LEVELDB (0), so an LMDB source without `backend` lands here.
    with pytest.raises(MinicaffeError, match="Data layer 'x': data source .*mnist_lmdb' is not a "
                                             "LevelDB.*looks like an LMDB: set `backend: LMDB`"):
        open_db(lmdb_path, 0, owner="Data layer 'x'")
    with pytest.raises(MinicaffeError, match="is not an LMDB.*looks like a LevelDB: set "
                                             "`backend: LEVELDB`"):
        open_db(leveldb_path, "lmdb")
    with pytest.raises(MinicaffeError, match="unknown backend 'rocksdb'; use LMDB or LEVELDB"):
        open_db(lmdb_path, "rocksdb")
    assert len(open_db(lmdb_path, "lmdb")) == len(open_db(leveldb_path, "LEVELDB")) == 1
    with open_writer(tmp_path / "w1", "leveldb") as w1, \
            open_writer(tmp_path / "w2", caffe_pb2.DataParameter.LMDB) as w2:
        assert isinstance(w1, LevelDBWriter) and isinstance(w2, LMDBWriter)


def test_missing_plyvel_is_one_clear_error(mode, tmp_path, monkeypatch):
    monkeypatch.setattr(dbmod, "plyvel", None)
    with pytest.raises(MinicaffeError, match="Data layer 'x': reading or writing LevelDB needs the "
                                             r"plyvel package \(pip install plyvel\)"):
        open_db(tmp_path, "leveldb", owner="Data layer 'x'")
