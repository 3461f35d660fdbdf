"""HDF5Output: the bottoms written as datasets data and label, read back with h5py and
with HDF5Data; one clear error per bad input. Tests taking `mode` run once per engine."""
import h5py
import numpy as np
import pytest

from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.layers.hdf5_output import HDF5OutputLayer
from tests.strategies import layer_param


def output_layer(file_name, name="save"):
    return create_layer(layer_param("HDF5Output", name=name,
                                    hdf5_output_param={"file_name": str(file_name)}))


def blobs(data, label):
    a, b = Blob(*np.shape(data)), Blob(*np.shape(label))
    a.data, b.data = data, label
    return [a, b]


def test_writes_data_and_label_in_caffes_four_axis_layout(mode, tmp_path):
    data = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    label = np.array([4.0, 7.0], np.float32)
    layer, bottom = output_layer(tmp_path / "out.h5"), blobs(data, label)
    layer.setup(bottom, [])
    assert layer.forward(bottom, []) == 0.0
    layer.close()
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert sorted(f) == ["data", "label"]
        np.testing.assert_array_equal(f["data"][()], data)
        assert f["label"].shape == (2, 1, 1, 1)  # Caffe's Blob::Reshape(num, channels, ...)
        np.testing.assert_array_equal(f["label"][()].ravel(), label)
        assert f["data"].dtype == np.float32


def test_a_written_file_reads_back_through_hdf5_data(mode, tmp_path):
    data = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    label = np.arange(6, dtype=np.float32)
    layer, bottom = output_layer(tmp_path / "out.h5"), blobs(data, label)
    layer.setup(bottom, [])
    layer.forward(bottom, [])
    layer.close()
    (tmp_path / "list.txt").write_text(str(tmp_path / "out.h5"))
    param = layer_param("HDF5Data", hdf5_data_param={"source": str(tmp_path / "list.txt"), "batch_size": 6})
    param.top.extend(["data", "label"])
    reader, top = create_layer(param), [Blob(), Blob()]
    reader.setup([], top)
    reader.forward([], top)
    np.testing.assert_array_equal(top[0].cpu_data().reshape(6, 4), data)
    np.testing.assert_array_equal(top[1].cpu_data().ravel(), label)


def test_backward_leaves_the_bottoms_alone(mode, tmp_path):
    layer, bottom = output_layer(tmp_path / "out.h5"), blobs(np.ones((2, 3)), np.ones(2))
    layer.setup(bottom, [])
    layer.forward(bottom, [])
    bottom[0].diff = np.full((2, 3), 5.0)
    layer.backward([], [True, True], bottom)
    np.testing.assert_array_equal(bottom[0].cpu_diff(), np.full((2, 3), 5.0))


def test_runs_on_the_host_on_both_engines():
    assert HDF5OutputLayer.forward_gpu is HDF5OutputLayer.forward_cpu


def test_a_second_batch_is_an_error_as_in_caffe(tmp_path):
    layer, bottom = output_layer(tmp_path / "out.h5"), blobs(np.ones((2, 3)), np.ones(2))
    layer.setup(bottom, [])
    layer.forward(bottom, [])
    with pytest.raises(MinicaffeError, match=r"HDF5Output layer 'save': .*out.h5' already holds a "
                                             r"batch of 2 rows"):
        layer.forward(bottom, [])


def test_batch_sizes_must_agree(tmp_path):
    layer, bottom = output_layer(tmp_path / "out.h5"), blobs(np.ones((2, 3)), np.ones(3))
    layer.setup(bottom, [])
    with pytest.raises(MinicaffeError, match=r"data has shape \(2, 3\) and label \(3,\); .*same "
                                             r"batch size"):
        layer.forward(bottom, [])


def test_more_than_four_axes(tmp_path):
    layer, bottom = output_layer(tmp_path / "out.h5"), blobs(np.ones((2, 1, 1, 1, 2)), np.ones(2))
    layer.setup(bottom, [])
    with pytest.raises(MinicaffeError, match=r"bottom 'data' has 5 axes"):
        layer.forward(bottom, [])


def test_unwritable_file_fails_at_setup(tmp_path):
    bottom = blobs(np.ones((2, 3)), np.ones(2))
    with pytest.raises(MinicaffeError, match=r"HDF5Output layer 'save': failed to create HDF5 file "
                                             r".*missing/out.h5"):
        output_layer(tmp_path / "missing" / "out.h5").setup(bottom, [])


def test_file_name_is_required():
    layer = create_layer(layer_param("HDF5Output", name="save"))
    with pytest.raises(MinicaffeError, match=r"hdf5_output_param.file_name is not set"):
        layer.setup(blobs(np.ones((1, 1)), np.ones(1)), [])


def test_needs_two_bottoms(tmp_path):
    with pytest.raises(MinicaffeError, match=r"HDF5Output layer 'save' takes exactly 2 bottom"):
        output_layer(tmp_path / "o.h5").setup([Blob(1)], [])
