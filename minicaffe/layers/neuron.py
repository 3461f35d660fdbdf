"""NeuronLayer: the base of element-wise layers (ReLU, Sigmoid, TanH, Dropout).

One bottom, one top of the same shape; each output depends only on the input at the
same position, which is why these layers may run in place (top == bottom).
"""
from minicaffe.layer import Layer


class NeuronLayer(Layer):
    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def reshape(self, bottom, top):
        top[0].reshape_like(bottom[0])
