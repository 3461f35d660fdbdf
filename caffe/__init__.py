"""`import caffe`: minicaffe under pycaffe's name.

Scripts written for BVLC Caffe's Python interface (pycaffe) run unchanged:

    import caffe
    from caffe import layers as L, params as P
    net = caffe.Net("deploy.prototxt", caffe.TEST, weights="model.caffemodel")

This package has no code of its own. It re-exports `minicaffe`, and it registers
minicaffe's modules under pycaffe's module names, so that `import caffe.draw` or
`from caffe.proto import caffe_pb2` finds the very module object that
`import minicaffe.draw` finds (one copy of each class, so `isinstance` agrees).

A real Caffe earlier on `sys.path` (PYTHONPATH) still wins: Python imports the first
`caffe` package it finds, and this one is found only when no other comes before it.
"""
import importlib
import sys

import minicaffe
from minicaffe import *  # noqa: F401,F403

# pycaffe module name -> the minicaffe module that plays its part
_MODULES = {
    "proto": "minicaffe.proto",
    "proto.caffe_pb2": "minicaffe.proto.caffe_pb2",
    "io": "minicaffe.io",
    "draw": "minicaffe.draw",
    "net_spec": "minicaffe.net_spec",
    "coord_map": "minicaffe.coord_map",
    "classifier": "minicaffe.classifier",
    "detector": "minicaffe.detector",
    # pycaffe's `caffe.layers` is NetSpec's layer factory; minicaffe.layers is our package
    # of layer modules, which answers CamelCase names (L.Convolution) as that factory.
    "layers": "minicaffe.layers",
}
for _name, _target in _MODULES.items():
    sys.modules[f"{__name__}.{_name}"] = importlib.import_module(_target)
    if "." not in _name:  # caffe.io as an attribute too, as a submodule import would make it
        globals()[_name] = sys.modules[f"{__name__}.{_name}"]
del _name, _target

__all__ = list(minicaffe.__all__)
__version__ = minicaffe.__version__
