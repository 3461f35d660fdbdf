"""The layer catalogue: one module per Caffe layer type, each registering itself with
`@register_layer` when imported here.

Adding a layer is adding its module and one line below (tests/test_layout.py checks that
every layer module is listed). The base modules (`neuron.py`, `loss.py`) and `helpers.py`
register no type; no layer module imports another layer module.
"""
from minicaffe.layers import (  # noqa: F401  (imported for their @register_layer)
    absval,
    accuracy,
    argmax,
    batch_norm,
    batch_reindex,
    bias,
    bnll,
    clip,
    concat,
    contrastive_loss,
    convolution,
    crop,
    data,
    deconvolution,
    distillation_loss,
    dropout,
    dummy_data,
    eltwise,
    elu,
    embed,
    euclidean_loss,
    exp,
    filter,
    flatten,
    hdf5_data,
    hdf5_output,
    hinge_loss,
    im2col,
    image_data,
    infogain_loss,
    inner_product,
    input,
    log,
    lrn,
    lstm,
    lstm_unit,
    memory_data,
    multinomial_logistic_loss,
    mvn,
    parameter,
    pooling,
    power,
    prelu,
    python,
    reduction,
    relu,
    reshape,
    rnn,
    scale,
    sigmoid,
    sigmoid_cross_entropy_loss,
    silence,
    slice,
    softmax,
    softmax_loss,
    split,
    spp,
    swish,
    tanh,
    threshold,
    tile,
    window_data,
)


def __getattr__(name):
    # pycaffe's `caffe.layers` is NetSpec's layer factory (`L.Convolution(...)`), while ours is
    # this package of layer modules. They share the name without clashing because the modules
    # are lower-case and layer types CamelCase: Python calls this hook only for names the
    # package lacks, so a CamelCase one is a layer type to describe. net_spec is imported on
    # first use, not at the top: loading the layer catalogue (which `import minicaffe` does)
    # then never depends on the NetSpec machinery, and no import cycle can form through it.
    if name[:1].isupper():
        from minicaffe import net_spec
        return getattr(net_spec.layers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
