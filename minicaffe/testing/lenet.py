"""Caffe's LeNet fed from memory, for tests, benchmarks and lessons.

`examples/mnist/lenet_train_test.prototxt` reads batches from an LMDB through a Data
layer. To time the framework rather than the data loader, or to feed both engines the
very same batch, the Data layer is swapped for an Input layer with the same tops
(`data` N x 1 x 28 x 28, `label` N); everything else is the example, unchanged.
"""
from __future__ import annotations

from pathlib import Path

from minicaffe.common import MinicaffeError
from minicaffe.proto import caffe_pb2
from minicaffe.protoio import read_net_param

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mnist" / "lenet_train_test.prototxt"


def lenet_with_input_layer(batch: int = 64, phase=caffe_pb2.TRAIN) -> caffe_pb2.NetParameter:
    """The example's net for `phase`, its Data layers replaced by one Input layer."""
    if not EXAMPLE.is_file():
        raise MinicaffeError(f"{EXAMPLE}: not found; LeNet's example ships with the source tree")
    param = read_net_param(EXAMPLE)
    layers = [layer for layer in param.layer if layer.type != "Data"]
    del param.layer[:]
    source = param.layer.add(name="mnist", type="Input", top=["data", "label"])
    source.input_param.shape.add(dim=[batch, 1, 28, 28])
    source.input_param.shape.add(dim=[batch])
    param.layer.extend(layers)
    param.state.phase = phase
    return param
