r"""Silence: consume blobs that nothing else reads, so that they are not net outputs.

Caffe: `silence_layer.cpp` / `.cu`. No device twin is needed: forward computes nothing,
and backward only zeroes memory (`opencl.fill`, Caffe's caffe_gpu_set).
"""
from minicaffe import opencl
from minicaffe.layer import Layer, register_layer


@register_layer
class SilenceLayer(Layer):
    r"""Take any number of bottoms, produce no top.

    A Net makes every top that no layer consumes one of its outputs (and the solver logs
    them); Silence consumes such blobs (an unused label, a second top one does not need)
    so they are not outputs. Forward does nothing. The objective does not depend on the bottoms through
    this layer, so the gradient it sends back is zero:
    $$ \frac{\partial E}{\partial x_k} = 0 \qquad (k = 1 \dots K) $$
    Backward writes those zeros into each bottom diff it is asked for (`propagate_down`),
    as Caffe does; a bottom that other layers also read gets their gradients through
    the Split the Net inserts, so the zeros add nothing to them.

    Bottoms: x_1 .. x_K (K >= 1), any shapes.   Tops: none.

        layer { name: "silence" type: "Silence" bottom: "label" }
    """

    type = "Silence"
    min_bottom_blobs = 1
    exact_num_top_blobs = 0

    def reshape(self, bottom, top):
        pass  # no tops to size

    def forward_cpu(self, bottom, top):
        pass  # nothing to compute

    forward_gpu = forward_cpu  # nothing to compute on either engine

    def backward_cpu(self, top, propagate_down, bottom):
        for blob, down in zip(bottom, propagate_down):
            if down:
                blob.mutable_cpu_diff()[...] = 0

    def backward_gpu(self, top, propagate_down, bottom):
        for blob, down in zip(bottom, propagate_down):
            if down:  # a device memset; no kernel of this layer's own
                opencl.fill(blob.mutable_gpu_diff(), blob.count, 0.0)
