"""MemoryData on real MNIST digits: set_input_arrays serves batches in order and wraps,
no copy and no transform on reset, transforms on add_datum_vector, a net trains from it,
and errors. Tests taking `mode` run once per engine (numpy, OpenCL)."""
import logging
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.io.idx import read_images, read_labels
from minicaffe.layer import create_layer
from minicaffe.layers.memory_data import MemoryDataLayer
from minicaffe.net import Net
from minicaffe.proto import caffe_pb2
from minicaffe.solvers import get_solver
from tests.strategies import layer_param

REPO = Path(__file__).resolve().parents[2]
MNIST = next((d for d in (REPO / "data" / "mnist", REPO.parent / "shared" / "data" / "mnist")
              if (d / "t10k-images-idx3-ubyte.gz").is_file()), REPO / "data" / "mnist")


@pytest.fixture(scope="module")
def digits():
    """The first 512 official test digits, scaled to [0, 1), as (N, 1, 28, 28) float32."""
    images = read_images(MNIST / "t10k-images-idx3-ubyte.gz")[:512]
    labels = read_labels(MNIST / "t10k-labels-idx1-ubyte.gz")[:512]
    return (np.ascontiguousarray(images[:, None], dtype=np.float32) / 256,
            labels.astype(np.float32))


def memory_layer(batch_size=4, c=1, h=28, w=28, name="mem", phase=caffe_pb2.TRAIN, **fields):
    param = layer_param("MemoryData", name=name, memory_data_param={
        "batch_size": batch_size, "channels": c, "height": h, "width": w}, **fields)
    param.phase = phase
    layer = create_layer(param)
    tops = [Blob(), Blob()]
    layer.setup([], tops)
    return layer, tops


def test_setup_shapes(mode):
    _, (data, label) = memory_layer(batch_size=8)
    assert data.shape == (8, 1, 28, 28)
    assert label.shape == (8,)  # (B,) at setup, (B, 1, 1, 1) after forward, as in Caffe


def test_batches_in_order_and_wrapping(mode, digits):
    images, labels = digits[0][:12], digits[1][:12]
    layer, tops = memory_layer(batch_size=4)
    layer.reset(images, labels)
    for k in range(5):  # 12 items, 3 batches: the 4th forward serves the first again
        layer.forward([], tops)
        first = 4 * (k % 3)
        assert tops[1].shape == (4, 1, 1, 1)
        np.testing.assert_array_equal(tops[0].cpu_data(), images[first:first + 4])
        np.testing.assert_array_equal(tops[1].cpu_data().ravel(), labels[first:first + 4])


def test_reads_the_callers_arrays_without_a_copy(mode, digits):
    # Caffe's Reset keeps the pointer: later writes to the array are what the net sees.
    images, labels = digits[0][:4].copy(), digits[1][:4].copy()
    layer, tops = memory_layer(batch_size=4)
    layer.reset(images, labels)
    images[2] = 0.5
    labels[:] = 9
    layer.forward([], tops)
    np.testing.assert_array_equal(tops[0].cpu_data()[2], 0.5)
    np.testing.assert_array_equal(tops[1].cpu_data(), 9)


def test_reset_warns_that_it_does_not_transform(mode, digits, caplog):
    layer, _ = memory_layer(transform_param={"scale": 0.5}, name="scaled")
    with caplog.at_level(logging.WARNING):
        layer.reset(digits[0][:4], digits[1][:4])
    assert "MemoryData layer 'scaled' does not transform array data on Reset()" in caplog.text


NET = """
name: "memory_net"
layer { name: "data" type: "MemoryData" top: "data" top: "label"
        memory_data_param { batch_size: 64 channels: 1 height: 28 width: 28 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def test_set_input_arrays_feeds_the_net(mode, digits):
    net = Net(text_format.Parse(NET, caffe_pb2.NetParameter()), caffe_pb2.TEST)
    images, labels = digits
    net.set_input_arrays(images[:128], labels[:128])  # (N,) labels, as pycaffe accepts
    for k in (0, 1, 0):
        net.forward()
        np.testing.assert_array_equal(net.blobs["data"].data, images[64 * k:64 * k + 64])
        w, b = net.params["ip"][0].data, net.params["ip"][1].data
        expected = images[64 * k:64 * k + 64].reshape(64, -1) @ w.T + b
        np.testing.assert_allclose(net.blobs["ip"].data, expected, rtol=1e-4, atol=1e-5)


def test_a_net_learns_from_memory(mode, digits):
    # Softmax regression on 512 real digits: 60 SGD steps must cut the loss well below
    # ln 10 = 2.30, where an untrained classifier starts.
    solver_param = caffe_pb2.SolverParameter(base_lr=0.5, lr_policy="fixed", max_iter=60,
                                             display=0, random_seed=1, snapshot_after_train=False)
    solver_param.net_param.CopyFrom(text_format.Parse(NET, caffe_pb2.NetParameter()))
    solver_param.solver_mode = caffe_pb2.SolverParameter.GPU if mode == "gpu" else \
        caffe_pb2.SolverParameter.CPU
    solver = get_solver(solver_param)
    solver.net.set_input_arrays(*digits)
    first = solver.net.forward_loss()
    solver.step(60)
    losses = [solver.net.forward_loss() for _ in range(8)]  # one pass over all 512 digits
    assert first > 1.5 and np.mean(losses) < 0.6


def datums(images, labels):
    return [caffe_pb2.Datum(channels=1, height=28, width=28, data=img.tobytes(), label=int(l))
            for img, l in zip(images, labels)]


def test_add_datum_vector_transforms(mode):
    # Real uint8 digits as Datums; TEST phase crops the centre 24x24 and scales by 1/256.
    raw = read_images(MNIST / "t10k-images-idx3-ubyte.gz")[:8]
    labels = read_labels(MNIST / "t10k-labels-idx1-ubyte.gz")[:8]
    layer, tops = memory_layer(batch_size=4, h=24, w=24, phase=caffe_pb2.TEST,
                               transform_param={"scale": 1 / 256, "crop_size": 24})
    layer.add_datum_vector(datums(raw, labels))
    for k in range(2):
        layer.forward([], tops)
        want = raw[4 * k:4 * k + 4, None, 2:26, 2:26].astype(np.float32) * np.float32(1 / 256)
        np.testing.assert_allclose(tops[0].cpu_data(), want, rtol=1e-6)
        np.testing.assert_array_equal(tops[1].cpu_data().ravel(), labels[4 * k:4 * k + 4])


def test_new_datums_wait_until_the_old_are_served(mode):
    raw = read_images(MNIST / "t10k-images-idx3-ubyte.gz")[:8]
    layer, tops = memory_layer(batch_size=4, name="busy")
    layer.add_datum_vector(datums(raw, range(8)))
    layer.forward([], tops)
    with pytest.raises(MinicaffeError, match="'busy': cannot add data until the current data"):
        layer.add_datum_vector(datums(raw[:4], range(4)))
    with pytest.raises(MinicaffeError, match="'busy': cannot change batch_size until"):
        layer.set_batch_size(2)
    layer.forward([], tops)  # the second and last batch: consumed
    layer.set_batch_size(2)
    layer.add_datum_vector(datums(raw[:2], [7, 8]))
    layer.forward([], tops)
    assert tops[0].shape == (2, 1, 28, 28)
    np.testing.assert_array_equal(tops[1].cpu_data().ravel(), [7, 8])


def test_device_body_is_the_host_body():
    assert MemoryDataLayer.forward_gpu is MemoryDataLayer.forward_cpu


@pytest.mark.parametrize("data, labels, message", [
    (np.zeros((4, 1, 28, 28)), np.zeros(4), r"the data array must be float32, got float64"),
    (np.zeros((4, 1, 28, 56), np.float32)[..., ::2], np.zeros(4), "must be C-contiguous"),
    (np.zeros((4, 3, 28, 28), np.float32), np.zeros(4), r"has shape \(4, 3, 28, 28\); "
                                                        r"expected \(N, 1, 28, 28\)"),
    (np.zeros((4, 1, 28, 28), np.float32), np.zeros((4, 2), np.float32), "labels array"),
    (np.zeros((4, 1, 28, 28), np.float32), np.zeros(8, np.float32), "same first dimension"),
    (np.zeros((6, 1, 28, 28), np.float32), np.zeros(6, np.float32),
     "6 items; that must be a positive multiple of batch_size 4"),
    ([[0.0]], np.zeros(4, np.float32), "must be a numpy array, got list"),
])
def test_bad_arrays(mode, data, labels, message):
    layer, _ = memory_layer(name="bad")
    with pytest.raises(MinicaffeError, match=r"MemoryData layer 'bad': .*" + message):
        layer.reset(data, labels)


def test_forward_before_any_data(mode):
    layer, tops = memory_layer(name="empty")
    with pytest.raises(MinicaffeError, match="'empty': no data to serve; call net.set_input"):
        layer.forward([], tops)


def test_missing_shape_field(mode):
    with pytest.raises(MinicaffeError, match="MemoryData layer 'bad': batch_size, channels, "
                                             "height and width must all be given and positive"):
        memory_layer(name="bad", h=0)


def test_datums_of_the_wrong_size(mode):
    raw = read_images(MNIST / "t10k-images-idx3-ubyte.gz")[:4]
    layer, _ = memory_layer(name="bad", h=20, w=20)
    with pytest.raises(MinicaffeError, match=r"'bad': datums of \(1, 28, 28\) .* become "
                                             r"\(1, 28, 28\) after the transform, but "
                                             r"memory_data_param says \(1, 20, 20\)"):
        layer.add_datum_vector(datums(raw, range(4)))
    with pytest.raises(MinicaffeError, match="'bad': 3 datums; the added data must be a multiple"):
        layer.add_datum_vector(datums(raw[:3], range(3)))


def test_set_input_arrays_needs_memory_data_first(mode):
    net = Net(text_format.Parse("""
        layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 } } }""",
                                caffe_pb2.NetParameter()), caffe_pb2.TEST)
    with pytest.raises(MinicaffeError, match="only be called if the first layer .* MemoryData"):
        net.set_input_arrays(np.zeros((1, 1, 1, 1), np.float32), np.zeros(1, np.float32))
