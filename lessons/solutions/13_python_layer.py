"""Lesson 13, reference solution: a Smooth L1 loss and a per-channel scale, as Python layers."""
import numpy as np

import minicaffe


class SmoothL1LossLayer(minicaffe.Layer):
    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise Exception("SmoothL1LossLayer takes two bottoms: prediction and target")

    def reshape(self, bottom, top):
        if bottom[0].count != bottom[1].count:
            raise Exception("prediction and target must hold as many values")
        self.d = np.zeros(bottom[0].shape, dtype=np.float32)
        top[0].reshape(1)

    def forward(self, bottom, top):
        self.d[...] = bottom[0].data - bottom[1].data.reshape(self.d.shape)
        a = np.abs(self.d)
        per_value = np.where(a < 1, 0.5 * self.d ** 2, a - 0.5)
        top[0].data[...] = per_value.sum() / bottom[0].num

    def backward(self, top, propagate_down, bottom):
        grad = np.clip(self.d, -1, 1) / bottom[0].num * top[0].diff[0]
        for i, sign in enumerate((1, -1)):
            if propagate_down[i]:
                bottom[i].diff[...] = sign * grad.reshape(bottom[i].shape)


class ChannelScaleLayer(minicaffe.Layer):
    def setup(self, bottom, top):
        channels = bottom[0].shape[1]
        self.blobs.add_blob(channels)
        self.blobs[0].data[...] = float(self.param_str) if self.param_str else 1.0

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def _broadcast(self, bottom):
        # (C,) -> (1, C, 1, 1, ...) so that it multiplies axis 1 of the bottom
        return self.blobs[0].data.reshape((1, -1) + (1,) * (len(bottom[0].shape) - 2))

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data * self._broadcast(bottom)

    def backward(self, top, propagate_down, bottom):
        axes = tuple(i for i in range(len(bottom[0].shape)) if i != 1)
        self.blobs[0].diff[...] += (top[0].diff * bottom[0].data).sum(axis=axes)
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff * self._broadcast(bottom)
