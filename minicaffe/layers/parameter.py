r"""Parameter: a learnable blob offered as a top, for layers that take weights as bottoms.

Caffe: `parameter_layer.hpp` (header only). No device twin is needed: the top shares
the parameter's memory, so nothing is computed on either engine.
"""
from math import prod

from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer, register_layer


@register_layer
class ParameterLayer(Layer):
    r"""Hold one learnable blob $\theta$ of shape `parameter_param.shape`; output it.

    $$ y = \theta, \qquad \frac{\partial E}{\partial \theta} = \frac{\partial E}{\partial y} $$

    The top *shares* the parameter's data and diff (`Blob.share_data` / `share_diff`), as
    in Caffe: forward copies nothing, and whatever the consumers write into the top's
    diff is the parameter's gradient, which the solver then applies. The blob starts at
    zero (there is no filler), or holds the values given in the prototxt's `blobs` or
    loaded from a caffemodel.

    Because the diff is shared rather than added to, the consumer's backward *overwrites*
    the gradient: as in Caffe, a Parameter's gradient does not accumulate over
    `iter_size` (a blob read by several layers still gets their sum, through the Split the
    Net inserts).

    Bottoms: none.   Top: y, of `parameter_param.shape`.

        layer { name: "w" type: "Parameter" top: "w"
                parameter_param { shape { dim: 10 dim: 3 } } }
    """

    type = "Parameter"
    exact_num_bottom_blobs = 0
    exact_num_top_blobs = 1

    def layer_setup(self, bottom, top):
        shape = tuple(self.layer_param.parameter_param.shape.dim)
        if not self.blobs:
            self.blobs.append(Blob(shape, name=f"{self.name}.param"))
        elif len(self.blobs) != 1 or self.blobs[0].count != prod(shape):
            given = [blob.shape for blob in self.blobs]
            raise MinicaffeError(f"{self.type} layer {self.name!r}: expected one parameter blob "
                                 f"of shape {shape} (parameter_param.shape), got {given}")
        self.param_propagate_down = [True]
        top[0].reshape(shape)

    def reshape(self, bottom, top):
        pass  # the top keeps the parameter's shape

    def forward_cpu(self, bottom, top):
        top[0].share_data(self.blobs[0])
        top[0].share_diff(self.blobs[0])

    def backward_cpu(self, top, propagate_down, bottom):
        pass  # the parameter already shares the top's diff

    # Sharing is not device-specific: the same buffers serve both engines.
    forward_gpu, backward_gpu = forward_cpu, backward_cpu
