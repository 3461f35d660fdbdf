"""LossLayer: the base of layers that turn predictions and targets into a scalar loss.

Two bottoms (prediction, target), one scalar top whose loss weight defaults to 1, and
no gradient for the target (labels are data, not something to learn).
"""
from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer


class LossLayer(Layer):
    exact_num_bottom_blobs = 2
    exact_num_top_blobs = 1
    default_loss_weight = 1.0

    def reshape(self, bottom, top):
        if bottom[0].shape[:1] != bottom[1].shape[:1]:
            raise MinicaffeError(
                f"{self.type} layer {self.name!r}: bottoms must have the same first (batch) "
                f"dimension, got {bottom[0].shape} and {bottom[1].shape}")
        top[0].reshape(())  # a scalar

    def allow_force_backward(self, bottom_index):
        return bottom_index != 1
