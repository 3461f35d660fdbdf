"""Blob: shapes, capacity-keeping reshape, read-only views, sharing, protobuf round trip."""
import numpy as np
import pytest
from hypothesis import given

from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.proto import caffe_pb2
from tests.strategies import blobs, shapes


@given(shapes(min_axes=0))
def test_reshape_count_and_zero_init(shape):
    blob = Blob(shape)
    assert blob.shape == shape and blob.count == int(np.prod(shape))
    assert blob.cpu_data().shape == shape and not blob.cpu_data().any()


def test_reshape_keeps_memory_within_capacity():
    blob = Blob(2, 3, 4)
    mem = blob.data_mem
    blob.reshape(4, 6)
    assert blob.data_mem is mem and blob.capacity == 24
    blob.reshape(5, 6)
    assert blob.data_mem is not mem and blob.capacity == 30


def test_cpu_data_is_read_only():
    blob = Blob(3)
    with pytest.raises(ValueError):
        blob.cpu_data()[0] = 1
    blob.mutable_cpu_data()[0] = 1
    blob.data[1] = 2  # pycaffe style
    assert list(blob.cpu_data()) == [1, 2, 0]


def test_update_subtracts_diff():
    blob = Blob(3)
    blob.data[...] = [1, 2, 3]
    blob.diff[...] = [0.5, 0.5, 4]
    blob.update()
    np.testing.assert_allclose(blob.data, [0.5, 1.5, -1])


def test_share_data_sees_writes_and_checks_count():
    a, b = Blob(2, 3), Blob(6)
    b.share_data(a)
    a.data[0, 1] = 7
    assert b.cpu_data()[1] == 7
    with pytest.raises(MinicaffeError, match="cannot share"):
        Blob(5).share_data(a)


@given(blobs(min_axes=0, max_axes=4))
def test_proto_round_trip(blob):
    proto = blob.to_proto(write_diff=True)
    copy = Blob()
    copy.from_proto(caffe_pb2.BlobProto.FromString(proto.SerializeToString()))
    assert copy.shape == blob.shape
    np.testing.assert_array_equal(copy.cpu_data(), blob.cpu_data())


def test_legacy_4d_proto_and_truncation():
    proto = caffe_pb2.BlobProto(num=1, channels=2, height=1, width=2, data=[1, 2, 3, 4])
    blob = Blob()
    blob.from_proto(proto)
    assert blob.shape == (1, 2, 1, 2)
    del proto.data[-1]
    with pytest.raises(MinicaffeError, match="truncated"):
        blob.from_proto(proto)


def test_scalar_blob_proto_keeps_zero_axes():
    blob = Blob(())
    blob.data[...] = 2.5
    # Caffe's Blob::ToProto adds a shape dim per axis, so a scalar is written as data only.
    proto = blob.to_proto()
    assert proto.SerializeToString() == caffe_pb2.BlobProto(data=[2.5]).SerializeToString()
    # Read back (as from a file Caffe wrote), and with an explicit empty shape: a scalar both times.
    for stored in (proto, caffe_pb2.BlobProto(shape=caffe_pb2.BlobShape(), data=[2.5])):
        copy = Blob()
        copy.from_proto(caffe_pb2.BlobProto.FromString(stored.SerializeToString()))
        assert copy.shape == () and copy.cpu_data() == 2.5
    # A blob with neither shape nor legacy dims holds one value, as in Caffe.
    with pytest.raises(MinicaffeError, match=r"3 values stored for shape \(\)"):
        Blob().from_proto(caffe_pb2.BlobProto(data=[1, 2, 3]))


def test_legacy_dims_take_precedence_and_may_be_zero():
    # Caffe's FromProto looks at whether a legacy field is set, not at its value.
    proto = caffe_pb2.BlobProto(num=0, channels=3, height=1, width=1)
    proto.shape.dim.extend([7])
    blob = Blob()
    blob.from_proto(proto)
    assert blob.shape == (0, 3, 1, 1) and blob.count == 0


def test_canonical_axis_index():
    blob = Blob(2, 3, 4)
    assert blob.canonical_axis_index(-1) == 2 and blob.canonical_axis_index(1) == 1
    with pytest.raises(MinicaffeError, match="axis 3 out of range"):
        blob.canonical_axis_index(3)
