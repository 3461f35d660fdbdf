"""A Euclidean loss written as a Python layer, the shape of pycaffe's pyloss example.

Use it from a prototxt with this folder on the Python path
(`PYTHONPATH=examples/pycaffe/layers minicaffe train ...`):

    layer { name: "loss" type: "Python" bottom: "pred" bottom: "target" top: "loss"
            python_param { module: "pyloss" layer: "EuclideanLossLayer" }
            loss_weight: 1 }

It computes what the built-in EuclideanLoss does, E = sum((a - b)^2) / (2 N), with N
the batch size. A Python layer is no loss layer by type, so the prototxt's
`loss_weight: 1` is what puts E into the objective; like pycaffe's example, backward
assumes that weight of 1 (it does not scale by `top[0].diff`).
"""
import numpy as np

import minicaffe as caffe


class EuclideanLossLayer(caffe.Layer):
    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise Exception("Need two inputs to compute distance.")

    def reshape(self, bottom, top):
        if bottom[0].count != bottom[1].count:
            raise Exception("Inputs must have the same dimension.")
        # a - b, kept from forward for backward
        self.diff = np.zeros_like(bottom[0].data, dtype=np.float32)
        top[0].reshape(1)  # the loss is a scalar

    def forward(self, bottom, top):
        self.diff[...] = bottom[0].data - bottom[1].data.reshape(self.diff.shape)
        top[0].data[...] = np.sum(self.diff ** 2) / bottom[0].num / 2.0

    def backward(self, top, propagate_down, bottom):
        # dE/da = (a - b) / N and dE/db = -(a - b) / N
        for i, sign in enumerate((1, -1)):
            if propagate_down[i]:
                # (the bottoms may differ in shape, not in count: reshape to each)
                bottom[i].diff[...] = sign * self.diff.reshape(bottom[i].shape) / bottom[i].num
