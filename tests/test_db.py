"""LMDB writer and positional reader: order, cycling, chunked commits, growth, errors."""
import itertools

import pytest

from minicaffe.common import MinicaffeError
from minicaffe.io import db as dbmod
from minicaffe.io.db import LMDBReader, LMDBWriter, is_lmdb, open_db


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
    assert writer.env.stat()["entries"] == 8
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


def test_leveldb_is_refused_with_advice(mode, tmp_path):
    path = write(tmp_path / "mnist_lmdb", [("a", b"1")])
    with pytest.raises(MinicaffeError, match="backend LEVELDB is not supported.*convert.*LMDB"
                                             ".*looks like an LMDB already: set `backend: LMDB`"):
        open_db(path, 0, owner="Data layer 'x'")
    with pytest.raises(MinicaffeError, match="LEVELDB is not supported"):
        open_db(tmp_path / "some_leveldb", "leveldb")
    with pytest.raises(MinicaffeError, match="unknown backend 'rocksdb'"):
        open_db(path, "rocksdb")
    assert len(open_db(path, "lmdb")) == 1
