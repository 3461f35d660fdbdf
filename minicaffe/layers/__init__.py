"""One module per Caffe layer type; each registers itself with `@register_layer`.

`minicaffe.layer.layer_registry()` imports every module here, so adding a layer is
adding a file.
"""
