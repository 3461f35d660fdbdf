"""The layer catalogue: one module per Caffe layer type, each registering itself with
`@register_layer` when imported here.

Adding a layer is adding its module and one line below (tests/test_layout.py checks that
every layer module is listed). The base modules (`neuron.py`, `loss.py`) and `helpers.py`
register no type; no layer module imports another layer module.
"""
from minicaffe.layers import (  # noqa: F401  (imported for their @register_layer)
    accuracy,
    concat,
    convolution,
    data,
    dropout,
    eltwise,
    euclidean_loss,
    flatten,
    inner_product,
    input,
    lrn,
    mvn,
    pooling,
    relu,
    reshape,
    sigmoid,
    softmax,
    softmax_loss,
    split,
    tanh,
)
