"""Lesson 15 check: the NetSpec-written LeNet has Caffe's layers and builds into a Net with
the right shapes; trained for a short while on real MNIST digits, it recognises unseen
ones through caffe.Classifier, whose answers match a plain forward pass of Caffe's own
deploy net (examples/mnist/lenet.prototxt) over the same weights."""
import numpy as np
import pytest

import caffe
from caffe.proto import caffe_pb2
from minicaffe import common
from minicaffe.io.idx import read_images, read_labels

pytestmark = pytest.mark.lesson15

ITERATIONS = 150   # about 5 s on one core; 94.6% of the 500 test digits with the solution
MIN_ACCURACY = 0.85
TRAIN_COUNT = 6400  # 100 batches of 64
TEST_COUNT = 500

# (name, type, bottoms, tops) of the layers between the data and the head, both nets alike
MIDDLE = [
    ("conv1", "Convolution", ["data"], ["conv1"]),
    ("pool1", "Pooling", ["conv1"], ["pool1"]),
    ("conv2", "Convolution", ["pool1"], ["conv2"]),
    ("pool2", "Pooling", ["conv2"], ["pool2"]),
    ("ip1", "InnerProduct", ["pool2"], ["ip1"]),
    ("relu1", "ReLU", ["ip1"], ["ip1"]),  # in place: ip1 is overwritten, no new blob
    ("ip2", "InnerProduct", ["ip1"], ["ip2"]),
]
TRAIN_LAYERS = [("data", "MemoryData", [], ["data", "label"]), *MIDDLE,
                ("loss", "SoftmaxWithLoss", ["ip2", "label"], ["loss"])]
DEPLOY_LAYERS = [("data", "Input", [], ["data"]), *MIDDLE, ("prob", "Softmax", ["ip2"], ["prob"])]


def check_wiring(net_param, expected):
    """Layer by layer: (name, type, bottoms, tops), with the first difference spelt out."""
    got = [(layer.name, layer.type, list(layer.bottom), list(layer.top)) for layer in net_param.layer]
    for i, (mine, want) in enumerate(zip(got, expected)):
        assert mine == want, f"layer {i}: (name, type, bottoms, tops) is {mine}, expected {want}"
    assert len(got) == len(expected), (f"{len(got)} layers, expected {len(expected)}: "
                                       f"{[name for name, *_ in got]}")


def check_middle_settings(net_param):
    """The settings of Caffe's LeNet on the learnable and pooling layers."""
    layers = {layer.name: layer for layer in net_param.layer}
    learnable = {"conv1": ("convolution_param", 20), "conv2": ("convolution_param", 50),
                 "ip1": ("inner_product_param", 500), "ip2": ("inner_product_param", 10)}
    for name, (field, outputs) in learnable.items():
        settings = getattr(layers[name], field)
        assert settings.num_output == outputs, f"{name}: num_output {settings.num_output}"
        assert settings.weight_filler.type == "xavier", f"{name}: weight_filler {settings.weight_filler}"
        assert settings.bias_filler.type == "constant", f"{name}: bias_filler {settings.bias_filler}"
        assert [p.lr_mult for p in layers[name].param] == [1, 2], f"{name}: param {layers[name].param}"
        if field == "convolution_param":
            assert list(settings.kernel_size) == [5], f"{name}: kernel_size {settings.kernel_size}"
            assert list(settings.stride) in ([], [1]), f"{name}: stride {settings.stride}"
    for name in ("pool1", "pool2"):
        settings = layers[name].pooling_param
        assert settings.pool == caffe_pb2.PoolingParameter.MAX, f"{name}: pool {settings.pool}"
        assert (settings.kernel_size, settings.stride) == (2, 2), f"{name}: {settings}"


def test_training_net_layers(lesson):
    net_param = lesson.lenet(64)
    assert isinstance(net_param, caffe_pb2.NetParameter), "lenet should return n.to_proto()"
    check_wiring(net_param, TRAIN_LAYERS)
    source = net_param.layer[0].memory_data_param
    assert (source.batch_size, source.channels, source.height, source.width) == (64, 1, 28, 28)
    check_middle_settings(net_param)


def test_deploy_net_layers(lesson):
    net_param = lesson.lenet(10, deploy=True)
    assert isinstance(net_param, caffe_pb2.NetParameter), "lenet should return n.to_proto()"
    check_wiring(net_param, DEPLOY_LAYERS)
    assert [list(shape.dim) for shape in net_param.layer[0].input_param.shape] == [[10, 1, 28, 28]]
    check_middle_settings(net_param)


def test_nets_build_with_the_right_shapes(lesson, tmp_path):
    middle = {"conv1": (20, 24, 24), "pool1": (20, 12, 12), "conv2": (50, 8, 8),
              "pool2": (50, 4, 4), "ip1": (500,), "ip2": (10,)}
    path = tmp_path / "train.prototxt"
    path.write_text(str(lesson.lenet(32)))  # through prototxt text, as a file on disk
    net = caffe.Net(str(path), caffe.TRAIN)
    expected = {"data": (32, 1, 28, 28), "label": (32,), **{k: (32, *v) for k, v in middle.items()},
                "loss": ()}
    assert {name: blob.shape for name, blob in net.blobs.items()} == expected
    assert [name for name, _ in net.params.items()] == ["conv1", "conv2", "ip1", "ip2"]

    path = tmp_path / "deploy.prototxt"
    path.write_text(str(lesson.lenet(5, deploy=True)))
    net = caffe.Net(str(path), caffe.TEST)
    assert net.inputs == ["data"], f"inputs {net.inputs}"
    assert net.outputs == ["prob"], f"outputs {net.outputs}: the deploy net should end in probabilities"
    expected = {"data": (5, 1, 28, 28), **{k: (5, *v) for k, v in middle.items()}, "prob": (5, 10)}
    assert {name: blob.shape for name, blob in net.blobs.items()} == expected


@pytest.fixture(scope="module")
def mnist(lesson_dir):
    return lesson_dir.parents[1] / "data" / "mnist"


@pytest.fixture(scope="module")
def trained(lesson, mnist, tmp_path_factory):
    """Train with the lesson's `train`; return (deploy prototxt written from `lenet`, weights)."""
    pixels = read_images(mnist / "train-10k-images-idx3-ubyte.gz")[:TRAIN_COUNT]
    images = pixels[:, None].astype(np.float32) * np.float32(0.00390625)
    labels = read_labels(mnist / "train-10k-labels-idx1-ubyte.gz")[:TRAIN_COUNT]
    workdir = tmp_path_factory.mktemp("lesson15")
    with common.using_mode(common.CPU):
        weights = lesson.train(workdir, images, labels, ITERATIONS)
    deploy = workdir / "deploy.prototxt"
    deploy.write_text(str(lesson.lenet(64, deploy=True)))
    return deploy, weights


@pytest.fixture(scope="module")
def unseen_digits(mnist):
    pixels = read_images(mnist / "t10k-images-idx3-ubyte.gz")[:TEST_COUNT]
    return pixels, read_labels(mnist / "t10k-labels-idx1-ubyte.gz")[:TEST_COUNT]


@pytest.fixture(scope="module")
def predicted(lesson, trained, unseen_digits):
    """The lesson's classify on the test digits, given as images in [0, 1] (pixels / 255)."""
    pixels, _ = unseen_digits
    with common.using_mode(common.CPU):
        return lesson.classify(*trained, [p[:, :, None].astype(np.float32) / 255 for p in pixels])


def test_classifier_recognises_unseen_digits(predicted, unseen_digits):
    _, labels = unseen_digits
    assert np.shape(predicted) == (TEST_COUNT,)
    assert np.issubdtype(np.asarray(predicted).dtype, np.integer), "classes are integers"
    accuracy = np.mean(predicted == labels)
    assert accuracy > MIN_ACCURACY, f"accuracy {accuracy:.3f} after {ITERATIONS} iterations"


def test_classify_agrees_with_a_plain_forward(predicted, trained, unseen_digits, lesson_dir):
    # The reference: Caffe's own deploy net with the trained weights, fed the digits
    # exactly as training fed them (pixels times 0.00390625), no Classifier involved.
    _, weights = trained
    pixels, _ = unseen_digits
    with common.using_mode(common.CPU):
        net = caffe.Net(str(lesson_dir.parents[1] / "examples" / "mnist" / "lenet.prototxt"),
                        caffe.TEST, weights=str(weights))
        data = pixels[:, None].astype(np.float32) * np.float32(0.00390625)
        expected = net.forward_all(data=data)["prob"].argmax(axis=1)
    disagree = np.flatnonzero(np.asarray(predicted) != expected)
    assert disagree.size == 0, (f"classify and a forward pass on the training's input scale disagree "
                                f"on {disagree.size} of {TEST_COUNT} digits (e.g. digit {disagree[:5]}): "
                                "is the preprocessing the training's?")
