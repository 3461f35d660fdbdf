"""The layer catalogue: one module per Caffe layer type, each registering itself with
`@register_layer` when imported here.

Adding a layer is adding its module and one line below (tests/test_layout.py checks that
every layer module is listed). The base modules (`neuron.py`, `loss.py`) and `helpers.py`
register no type; no layer module imports another layer module.
"""
from minicaffe.layers import (  # noqa: F401  (imported for their @register_layer)
    accuracy,
    argmax,
    batch_reindex,
    concat,
    contrastive_loss,
    convolution,
    data,
    dropout,
    eltwise,
    embed,
    euclidean_loss,
    filter,
    flatten,
    hinge_loss,
    infogain_loss,
    inner_product,
    input,
    log,
    multinomial_logistic_loss,
    parameter,
    pooling,
    power,
    prelu,
    reduction,
    relu,
    reshape,
    sigmoid,
    sigmoid_cross_entropy_loss,
    silence,
    slice,
    softmax,
    softmax_loss,
    split,
    swish,
    tanh,
    threshold,
    tile,
)
