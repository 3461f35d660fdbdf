"""HDF5Data: rows of named datasets from .h5 files written by the tests; order, wrap,
several files, shuffle, resume, and one clear error per bad input.
Tests taking `mode` run once per engine (numpy, OpenCL)."""
import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicaffe import common
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.layers.hdf5_data import HDF5DataLayer
from tests.strategies import layer_param


def write_h5(path, **datasets):
    with h5py.File(path, "w") as f:
        for name, values in datasets.items():
            f.create_dataset(name, data=values)
    return str(path)


def write_list(path, files):
    path.write_text("\n".join(map(str, files)) + "\n")
    return str(path)


def hdf5_layer(source, batch_size, tops=("data", "label"), shuffle=False, name="h5", **extra):
    param = layer_param("HDF5Data", name=name,
                        hdf5_data_param={"source": source, "batch_size": batch_size, "shuffle": shuffle},
                        **extra)
    param.top.extend(tops)
    layer = create_layer(param)
    top = [Blob() for _ in tops]
    layer.setup([], top)
    return layer, top


def forward(layer, top):
    layer.forward([], top)
    return [blob.cpu_data().copy() for blob in top]


def numbered(rows, start=0, cols=3):
    """Row r of the data holds 10*(start+r) + column: every value says where it came from."""
    ids = np.arange(start, start + rows)
    return (10 * ids[:, None] + np.arange(cols)).astype(np.float32), ids.astype(np.float32)


def test_rows_in_order_wrapping_to_the_start(mode, tmp_path):
    data, label = numbered(5)
    source = write_list(tmp_path / "list.txt", [write_h5(tmp_path / "a.h5", data=data, label=label)])
    layer, top = hdf5_layer(source, batch_size=3)
    assert [t.shape for t in top] == [(3, 3), (3,)]
    got = [forward(layer, top) for _ in range(3)]
    # 9 rows of a 5-row file: 0 1 2 | 3 4 0 | 1 2 3
    for (d, l), rows in zip(got, ([0, 1, 2], [3, 4, 0], [1, 2, 3])):
        np.testing.assert_array_equal(l, rows)
        np.testing.assert_array_equal(d, data[rows])


def test_any_number_of_tops_by_dataset_name_and_integer_data(mode, tmp_path):
    images = np.arange(4 * 2 * 3 * 3, dtype=np.float64).reshape(4, 2, 3, 3)
    ids = np.array([7, 8, 9, 10], dtype=np.int64)  # integer data is read as float, as in Caffe
    weights = np.array([[0.5], [1.5], [2.5], [3.5]], dtype=np.float32)
    path = write_h5(tmp_path / "a.h5", image=images, ids=ids, w=weights, unused=np.zeros(4))
    layer, top = hdf5_layer(write_list(tmp_path / "l.txt", [path]), 2, tops=("w", "image", "ids"))
    assert [t.shape for t in top] == [(2, 1), (2, 2, 3, 3), (2,)]
    w, im, i = forward(layer, top)
    np.testing.assert_array_equal(im, images[:2].astype(np.float32))
    np.testing.assert_array_equal(i, [7, 8])
    np.testing.assert_array_equal(w, [[0.5], [1.5]])
    assert im.dtype == np.float32


def test_batches_span_files_and_loop_over_the_list(mode, tmp_path):
    files = []
    for k, (rows, start) in enumerate(((3, 0), (2, 3))):
        d, l = numbered(rows, start)
        files.append(write_h5(tmp_path / f"{k}.h5", data=d, label=l))
    # Whitespace of any kind separates names, as in Caffe's `source_file >> line`.
    (tmp_path / "l.txt").write_text(f"  {files[0]}\t{files[1]}\n\n")
    layer, top = hdf5_layer(str(tmp_path / "l.txt"), batch_size=4)
    labels = np.concatenate([forward(layer, top)[1] for _ in range(3)])
    np.testing.assert_array_equal(labels, [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1])


@settings(deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=1, max_size=3), batch=st.integers(1, 7),
       batches=st.integers(1, 6))
def test_unshuffled_reading_is_the_concatenated_rows_cycled(tmp_path_factory, sizes, batch, batches):
    folder = tmp_path_factory.mktemp("h5")
    files, start = [], 0
    for k, rows in enumerate(sizes):
        d, l = numbered(rows, start, cols=2)
        files.append(write_h5(folder / f"{k}.h5", data=d, label=l))
        start += rows
    layer, top = hdf5_layer(write_list(folder / "l.txt", files), batch)
    got = np.concatenate([forward(layer, top)[1] for _ in range(batches)])
    np.testing.assert_array_equal(got, np.arange(batch * batches) % sum(sizes))


def epochs(layer, top, rows, count):
    """The labels of `count` passes over `rows` rows, one row per batch."""
    labels = np.concatenate([forward(layer, top)[1] for _ in range(rows * count)])
    return labels.reshape(count, rows)


def test_shuffle_visits_every_row_once_per_pass_in_new_orders(mode, tmp_path):
    files, start = [], 0
    for k, rows in enumerate((6, 5, 7)):
        d, l = numbered(rows, start)
        files.append(write_h5(tmp_path / f"{k}.h5", data=d, label=l))
        start += rows
    source = write_list(tmp_path / "l.txt", files)
    common.set_random_seed(3)
    layer, top = hdf5_layer(source, batch_size=1, shuffle=True)
    passes = epochs(layer, top, 18, 4)
    for p in passes:  # every row once per pass
        np.testing.assert_array_equal(np.sort(p), np.arange(18))
    assert len({tuple(p) for p in passes}) == 4, "every pass should have its own order"
    assert not np.array_equal(passes[0], np.arange(18))
    # Rows of one file stay together within a pass (files are shuffled, not mixed).
    file_of = np.repeat([0, 1, 2], (6, 5, 7))
    for p in passes:
        runs = file_of[p.astype(int)]
        assert (np.diff(runs) != 0).sum() == 2
    # The data rows travel with their labels.
    common.set_random_seed(3)
    layer, top = hdf5_layer(source, batch_size=5, shuffle=True)
    d, l = forward(layer, top)
    np.testing.assert_array_equal(d[:, 0], 10 * l)


def test_shuffle_is_repeatable_and_set_batch_index_replays_it(mode, tmp_path):
    files = [write_h5(tmp_path / f"{k}.h5", data=numbered(4, 4 * k)[0], label=numbered(4, 4 * k)[1])
             for k in range(3)]
    source = write_list(tmp_path / "l.txt", files)
    common.set_random_seed(11)
    layer, top = hdf5_layer(source, batch_size=5, shuffle=True)
    straight = [forward(layer, top)[1] for _ in range(7)]
    common.set_random_seed(11)
    again, top2 = hdf5_layer(source, batch_size=5, shuffle=True)
    np.testing.assert_array_equal(forward(again, top2)[1], straight[0])
    again.set_batch_index(4)  # as a resumed solver does
    np.testing.assert_array_equal(forward(again, top2)[1], straight[4])
    np.testing.assert_array_equal(forward(again, top2)[1], straight[5])
    again.set_batch_index(0)
    np.testing.assert_array_equal(forward(again, top2)[1], straight[0])


def test_runs_on_the_host_on_both_engines():
    assert HDF5DataLayer.forward_gpu is HDF5DataLayer.forward_cpu
    assert HDF5DataLayer.backward_gpu is HDF5DataLayer.backward_cpu


def test_in_a_net_the_tops_feed_the_next_layer(mode, tmp_path):
    from google.protobuf import text_format

    from minicaffe.net import Net
    from minicaffe.proto import caffe_pb2
    data, label = numbered(4)
    source = write_list(tmp_path / "l.txt", [write_h5(tmp_path / "a.h5", data=data, label=label)])
    text = f"""
    layer {{ name: "d" type: "HDF5Data" top: "data" top: "label"
            hdf5_data_param {{ source: "{source}" batch_size: 2 }} }}
    layer {{ name: "p" type: "Power" bottom: "data" top: "twice" power_param {{ scale: 2 }} }}"""
    net = Net(text_format.Parse(text, caffe_pb2.NetParameter()), phase=caffe_pb2.TRAIN)
    net.forward()
    net.forward()
    np.testing.assert_array_equal(net.blobs["twice"].data, 2 * data[2:4])
    np.testing.assert_array_equal(net.blobs["label"].data, [2, 3])


# ---------------------------------------------------------------- bad input
@pytest.fixture
def good_file(tmp_path):
    data, label = numbered(4)
    return write_h5(tmp_path / "good.h5", data=data, label=label)


def test_missing_source(tmp_path):
    with pytest.raises(MinicaffeError, match=r"HDF5Data layer 'h5': failed to open source file "
                                             r".*nowhere.txt"):
        hdf5_layer(str(tmp_path / "nowhere.txt"), 2)


def test_empty_list(tmp_path):
    (tmp_path / "l.txt").write_text("\n  \n")
    with pytest.raises(MinicaffeError, match=r"lists no HDF5 file"):
        hdf5_layer(str(tmp_path / "l.txt"), 2)


def test_missing_h5_file(tmp_path):
    source = write_list(tmp_path / "l.txt", [tmp_path / "gone.h5"])
    with pytest.raises(MinicaffeError, match=r"HDF5Data layer 'h5': HDF5 file .*gone.h5' does not exist"):
        hdf5_layer(source, 2)


def test_not_an_hdf5_file(tmp_path):
    (tmp_path / "bad.h5").write_text("hello")
    with pytest.raises(MinicaffeError, match=r"failed opening HDF5 file .*bad.h5"):
        hdf5_layer(write_list(tmp_path / "l.txt", [tmp_path / "bad.h5"]), 2)


def test_missing_dataset_names_the_file_and_what_is_there(tmp_path, good_file):
    with pytest.raises(MinicaffeError, match=r"HDF5Data layer 'h5': .*good.h5: no HDF5 dataset "
                                             r"'labels' \(datasets present: \['data', 'label'\]\)"):
        hdf5_layer(write_list(tmp_path / "l.txt", [good_file]), 2, tops=("data", "labels"))


def test_datasets_with_different_row_counts(tmp_path):
    path = write_h5(tmp_path / "a.h5", data=np.zeros((4, 2)), label=np.zeros(3))
    with pytest.raises(MinicaffeError, match=r"dataset 'label' has 3 rows but 'data' has 4"):
        hdf5_layer(write_list(tmp_path / "l.txt", [path]), 2)


def test_a_later_file_with_another_row_shape(tmp_path, good_file):
    other = write_h5(tmp_path / "other.h5", data=np.zeros((2, 5), np.float32), label=np.zeros(2))
    layer, top = hdf5_layer(write_list(tmp_path / "l.txt", [good_file, other]), 4)
    with pytest.raises(MinicaffeError, match=r"other.h5: dataset 'data' has rows of shape \(5,\) "
                                             r"but .*good.h5 has \(3,\)"):
        forward(layer, top)


def test_string_and_scalar_datasets_are_refused(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("data", data=np.array([b"ab", b"cd"]))
        f.create_dataset("label", data=np.float32(3))
    source = write_list(tmp_path / "l.txt", [tmp_path / "a.h5"])
    with pytest.raises(MinicaffeError, match=r"dataset 'data' holds .*only float or integer"):
        hdf5_layer(source, 1)
    with pytest.raises(MinicaffeError, match=r"dataset 'label' has 0 axes"):
        hdf5_layer(source, 1, tops=("label",))


def test_transform_param_is_refused(tmp_path, good_file):
    with pytest.raises(MinicaffeError, match=r"HDF5Data layer 'h5' does not transform data"):
        hdf5_layer(write_list(tmp_path / "l.txt", [good_file]), 2, transform_param={"scale": 2})


def test_batch_size_must_be_positive(tmp_path, good_file):
    with pytest.raises(MinicaffeError, match=r"batch_size must be positive, got 0"):
        hdf5_layer(write_list(tmp_path / "l.txt", [good_file]), 0)


def test_takes_no_bottom(tmp_path, good_file):
    param = layer_param("HDF5Data", name="h5", hdf5_data_param={
        "source": write_list(tmp_path / "l.txt", [good_file]), "batch_size": 1})
    param.top.append("data")
    with pytest.raises(MinicaffeError, match=r"HDF5Data layer 'h5' takes exactly 0 bottom"):
        create_layer(param).setup([Blob(1)], [Blob()])
