"""Model-zoo definitions resized for a test or a benchmark."""
from __future__ import annotations

from minicaffe import protoio
from minicaffe.proto import caffe_pb2


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
