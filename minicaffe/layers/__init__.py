"""The layer catalogue: one module per Caffe layer type, each registering itself with
`@register_layer` when imported here.

Adding a layer is adding its module and one line below (tests/test_layout.py checks that
every layer module is listed). The base modules (`neuron.py`, `loss.py`) and `helpers.py`
register no type; no layer module imports another layer module.
"""
from minicaffe.layers import (  # noqa: F401  (imported for their @register_layer)
    accuracy,
    concat,
    contrastive_loss,
    convolution,
    data,
    dropout,
    eltwise,
    euclidean_loss,
    flatten,
    hinge_loss,
    infogain_loss,
    inner_product,
    input,
    multinomial_logistic_loss,
    pooling,
    relu,
    reshape,
    sigmoid,
    sigmoid_cross_entropy_loss,
    softmax,
    softmax_loss,
    split,
    tanh,
)
