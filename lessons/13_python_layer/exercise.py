"""Lesson 13: write layers in Python. Complete the methods marked TODO.

Check your work:   python -m pytest lessons/13_python_layer
Try it:            python lessons/13_python_layer/exercise.py
"""
import numpy as np

import minicaffe


class SmoothL1LossLayer(minicaffe.Layer):
    """E = (1/N) sum_i f(a_i - b_i), f(d) = d^2 / 2 where |d| < 1, else |d| - 1/2.

    Bottoms: the prediction a and the target b (as many values; N = a's first axis).
    Top: the loss, shape (1,). dE/da = clip(d, -1, 1) / N, dE/db = -dE/da, each times the
    top's diff (the loss weight).
    """

    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise Exception("SmoothL1LossLayer takes two bottoms: prediction and target")

    def reshape(self, bottom, top):
        """Check the counts match, make room for d = a - b, and shape the top to (1,)."""
        raise NotImplementedError("TODO: lesson 13, SmoothL1LossLayer.reshape")

    def forward(self, bottom, top):
        """Keep d = a - b for backward; write the loss into top[0].data."""
        raise NotImplementedError("TODO: lesson 13, SmoothL1LossLayer.forward")

    def backward(self, top, propagate_down, bottom):
        """Write bottom[i].diff where propagate_down[i], scaled by top[0].diff[0]."""
        raise NotImplementedError("TODO: lesson 13, SmoothL1LossLayer.backward")


class ChannelScaleLayer(minicaffe.Layer):
    """y[n, c, ...] = w[c] * x[n, c, ...] with w a learnable blob of shape (C,).

    `param_str` gives w's starting value (all channels alike; 1 when empty).
    """

    def setup(self, bottom, top):
        """Add the learnable blob w with self.blobs.add_blob and fill it from param_str."""
        raise NotImplementedError("TODO: lesson 13, ChannelScaleLayer.setup")

    def reshape(self, bottom, top):
        """The top has the bottom's shape, whatever batch size comes."""
        raise NotImplementedError("TODO: lesson 13, ChannelScaleLayer.reshape")

    def forward(self, bottom, top):
        raise NotImplementedError("TODO: lesson 13, ChannelScaleLayer.forward")

    def backward(self, top, propagate_down, bottom):
        """ADD dE/dw into self.blobs[0].diff; write dE/dx where propagate_down[0]."""
        raise NotImplementedError("TODO: lesson 13, ChannelScaleLayer.backward")


if __name__ == "__main__":
    import sys

    from google.protobuf import text_format

    from minicaffe.proto import caffe_pb2

    # Use the two layers in a net, as a prototxt would: python_param names this module.
    sys.modules["lesson13_layers"] = sys.modules[__name__]
    net_text = """
    layer { name: "x" type: "Input" top: "x" top: "t"
            input_param { shape { dim: 2 dim: 3 } } }
    layer { name: "scale" type: "Python" bottom: "x" top: "y"
            python_param { module: "lesson13_layers" layer: "ChannelScaleLayer" param_str: "2" } }
    layer { name: "loss" type: "Python" bottom: "y" bottom: "t" top: "loss" loss_weight: 1
            python_param { module: "lesson13_layers" layer: "SmoothL1LossLayer" } }
    """
    net = minicaffe.Net(text_format.Parse(net_text, caffe_pb2.NetParameter()), minicaffe.TRAIN)
    net.blobs["x"].data[...] = [[1, 2, 3], [0.1, 0.2, 0.3]]
    net.blobs["t"].data[...] = 0
    print("loss:", net.forward()["loss"])
    net.backward()
    print("dE/dw:", net.params["scale"][0].diff)
