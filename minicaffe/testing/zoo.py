"""Model-zoo definitions resized for a test, a benchmark or the docs' model-zoo page.

Caffe's prototxts are not part of the project: they are read from `../shared/caffe_models`
beside the repository (BVLC Caffe's `models/` and `examples/`, ResNet and SqueezeNet).
`ZOO` lists the nets of the docs' model-zoo page; `zoo_net` gives each one at batch 1,
ready to build in the TEST phase.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minicaffe import protoio
from minicaffe.proto import caffe_pb2

# The folder of Caffe's definitions, beside the repository (as tests/zoo.py finds it).
CAFFE_MODELS = Path(__file__).resolve().parents[2].parent / "shared" / "caffe_models"


@dataclass(frozen=True)
class ZooNet:
    """One net of the model-zoo page: a short key, its title and its definition's path
    under CAFFE_MODELS. `data_shape`, for a training definition read by Data layers,
    is the shape (batch 1) of the Input layer that stands in for them."""
    key: str
    title: str
    path: str
    data_shape: tuple[int, ...] | None = None


ZOO = [
    ZooNet("lenet", "LeNet", "examples/mnist/lenet.prototxt"),
    ZooNet("cifar10_quick", "CIFAR-10 quick", "examples/cifar10/cifar10_quick.prototxt"),
    ZooNet("cifar10_full", "CIFAR-10 full", "examples/cifar10/cifar10_full.prototxt"),
    ZooNet("caffenet", "CaffeNet", "models/bvlc_reference_caffenet/deploy.prototxt"),
    ZooNet("alexnet", "AlexNet", "models/bvlc_alexnet/deploy.prototxt"),
    ZooNet("rcnn", "R-CNN (ILSVRC13)", "models/bvlc_reference_rcnn_ilsvrc13/deploy.prototxt"),
    ZooNet("flickr_style", "Flickr style", "models/finetune_flickr_style/deploy.prototxt"),
    ZooNet("googlenet", "GoogLeNet", "models/bvlc_googlenet/deploy.prototxt"),
    ZooNet("resnet50", "ResNet-50", "models/resnet/ResNet-50-deploy.prototxt"),
    ZooNet("resnet101", "ResNet-101", "models/resnet/ResNet-101-deploy.prototxt"),
    ZooNet("resnet152", "ResNet-152", "models/resnet/ResNet-152-deploy.prototxt"),
    ZooNet("squeezenet10", "SqueezeNet 1.0", "models/squeezenet_v1.0/deploy.prototxt"),
    ZooNet("squeezenet11", "SqueezeNet 1.1", "models/squeezenet_v1.1/deploy.prototxt"),
    # The autoencoder has no deploy file: its Data layers (one per phase and stage) give
    # way to one Input of an MNIST image's shape.
    ZooNet("mnist_autoencoder", "MNIST autoencoder", "examples/mnist/mnist_autoencoder.prototxt",
           data_shape=(1, 1, 28, 28)),
    ZooNet("siamese", "Siamese (MNIST)", "examples/siamese/mnist_siamese.prototxt"),
]


def at_batch_one(path) -> caffe_pb2.NetParameter:
    """The net definition at `path` with every input's first dimension set to 1, whether
    declared by Input layers or by the deprecated `input_shape` / `input_dim` fields."""
    param = protoio.read_net_param(path)
    for shape in param.input_shape:
        shape.dim[0] = 1
    if param.input_dim:
        param.input_dim[0] = 1
    for layer in param.layer:
        for shape in layer.input_param.shape:
            shape.dim[0] = 1
    return param


def data_as_input(param: caffe_pb2.NetParameter, shape) -> caffe_pb2.NetParameter:
    """`param` with its Data layers replaced by one Input layer, first in the net, whose
    tops (those the Data layers make) have `shape`. Data layers that differ only by
    phase or stage make the same tops, so one Input serves every phase."""
    out = caffe_pb2.NetParameter()
    out.CopyFrom(param)
    del out.layer[:]
    tops: list[str] = []
    for layer in param.layer:
        if layer.type == "Data":
            tops += [t for t in layer.top if t not in tops]
    data = out.layer.add(name="data", type="Input", top=tops)
    for _ in tops:
        data.input_param.shape.add(dim=list(shape))
    out.layer.extend(layer for layer in param.layer if layer.type != "Data")
    return out


def zoo_net(net: ZooNet, models=CAFFE_MODELS) -> caffe_pb2.NetParameter:
    """The definition of `net` at batch 1, ready to build in the TEST phase."""
    if net.data_shape is not None:
        return data_as_input(protoio.read_net_param(Path(models) / net.path), net.data_shape)
    return at_batch_one(Path(models) / net.path)


def draw_weights(net, rng) -> None:
    """Fill `net`'s parameters with values that keep activations of a deep net moderate
    (the definitions come without weights): He initialisation for convolution and inner
    product weights, BatchNorm statistics of mean 0 and variance 1, small Scale factors
    (a residual sum grows by 1 + scale^2 a block), small uniform values elsewhere."""
    for name, blobs in net.params.items():
        kind = net.layer_dict[name].type
        if kind == "BatchNorm":  # mean 0, variance 1, and the moving-average factor 1
            blobs[0].data[...], blobs[1].data[...], blobs[2].data[...] = 0, 1, 1
            continue
        for i, blob in enumerate(blobs):
            if i == 0 and blob.num_axes > 1:  # He: keeps the variance through ReLUs
                fan_in = blob.count // blob.shape[0]
                if kind == "Deconvolution":
                    fan_in = blob.count // blob.shape[1]
                blob.data[...] = rng.normal(0, np.sqrt(2 / fan_in), blob.shape)
            elif kind == "Scale" and i == 0:
                blob.data[...] = rng.uniform(0.1, 0.3, blob.shape)
            else:
                blob.data[...] = rng.uniform(-0.1, 0.1, blob.shape)
