r"""Input: the entry point of a deployed net; its tops are filled by the user.

Caffe: `input_layer.cpp`. No device twin is needed: no values are computed.
"""
from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer, register_layer


@register_layer
class InputLayer(Layer):
    r"""Declare the net's input blobs and their shapes; compute nothing.

    `input_param { shape { dim: ... } }` gives either one shape for every top or one
    shape per top (in top order); with no shape the tops keep whatever shape they have.
    Setup shapes the tops once; after that the user writes the values (`net.blobs["data"]
    .data[...] = image`) and may reshape the tops, which `reshape` leaves alone, as in
    Caffe. Forward and backward do nothing: no bottoms, no gradient to pass on.

    Bottoms: none.   Tops: one or more, shaped by `input_param.shape`.

        layer { name: "data" type: "Input" top: "data"
                input_param { shape { dim: 1 dim: 3 dim: 227 dim: 227 } } }
    """

    type = "Input"
    exact_num_bottom_blobs = 0
    min_top_blobs = 1

    def layer_setup(self, bottom, top):
        shapes = self.layer_param.input_param.shape
        if len(shapes) not in (0, 1, len(top)):
            raise MinicaffeError(
                f"{self.type} layer {self.name!r}: give input_param.shape once, once per top "
                f"blob, or not at all: {len(top)} top(s) and {len(shapes)} shape(s)")
        for i, blob in enumerate(top):
            if shapes:
                dims = tuple(shapes[0 if len(shapes) == 1 else i].dim)
                if any(d < 0 for d in dims):
                    raise MinicaffeError(f"{self.type} layer {self.name!r}: top {i} has a "
                                         f"negative dimension in shape {dims}")
                blob.reshape(dims)

    def reshape(self, bottom, top):
        pass  # the user owns the tops' shapes after setup

    def forward_cpu(self, bottom, top):
        pass

    def backward_cpu(self, top, propagate_down, bottom):
        pass

    forward_gpu, backward_gpu = forward_cpu, backward_cpu
