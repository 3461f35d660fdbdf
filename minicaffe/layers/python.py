r"""Python: a layer whose body is a class the user writes in Python.

Caffe: `python_layer.hpp` (the C++ side), `layer_factory.cpp` (GetPythonLayer, which
imports the module) and `python/caffe/_caffe.cpp` (pycaffe's `caffe.Layer` and the
`add_blob` of its `blobs`). No device twin: the user's code runs on the host on either
engine, reading and writing the blobs' host copies, which the blobs sync as they do for
any layer that reads `cpu_data` (Caffe's PythonLayer has only `Forward_cpu` too).
"""
from __future__ import annotations

import importlib
import os
import traceback
from pathlib import Path

from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer, register_layer

_PACKAGE_DIR = str(Path(__file__).resolve().parents[1]) + os.sep


class BlobVec(list):
    """A layer's learnable blobs as pycaffe shows them: a list with `add_blob(*shape)`.

    The Net reads this very list after `setup`, so a blob added here is learnable: it
    gets its `param { lr_mult decay_mult }`, the solver updates it and snapshots save it.
    """

    def __init__(self, blobs=(), layer_name: str = ""):
        super().__init__(blobs)
        self.layer_name = layer_name

    def add_blob(self, *shape) -> Blob:
        """Append a zero blob of `shape` (pycaffe: `self.blobs.add_blob(2, 3)`)."""
        blob = Blob(*shape, name=f"{self.layer_name}[{len(self)}]")
        if shape:  # the memory starts zeroed, as Caffe's blob does
            blob.mutable_cpu_data()[...] = 0
        self.append(blob)
        return blob


def user_error(err: Exception, message: str) -> MinicaffeError:
    """A MinicaffeError that is also of the user's exception type.

    The CLI prints a MinicaffeError as one clear paragraph; pycaffe scripts catch the
    user's own exception (`except RuntimeError`), because pycaffe lets it through. An
    error of both types serves both. Exception types that cannot be mixed in (a
    different memory layout, a constructor with other arguments) give a plain
    MinicaffeError, chained to the user's."""
    try:
        both = type(type(err).__name__, (MinicaffeError, type(err)), {"__module__": type(err).__module__})
        return both(message)
    except TypeError:
        return MinicaffeError(message)


@register_layer
class PythonLayer(Layer):
    r"""Run a user's Python class as a layer (Caffe's PythonLayer, pycaffe's `caffe.Layer`).

    `python_param { module: "pyloss" layer: "EuclideanLossLayer" param_str: "..." }`
    imports `module` from the Python path (`sys.path`: add the module's folder to
    `$PYTHONPATH`, as Caffe's users do) and builds `layer` with the LayerParameter. The
    class subclasses `minicaffe.Layer` and defines

    * `setup(bottom, top)`: once; `self.param_str` and `self.phase` (0 TRAIN, 1 TEST) are
      set just before it runs; `self.blobs.add_blob(*shape)` adds a learnable blob;
    * `reshape(bottom, top)`: before every forward; size the tops with `top[i].reshape`;
    * `forward(bottom, top)`: write `top[i].data[...]`;
    * `backward(top, propagate_down, bottom)`: write `bottom[i].diff[...]` where
      `propagate_down[i]`, and *add* into `self.blobs[k].diff`.

    Blobs offer `.data`, `.diff` (writable numpy arrays), `.reshape(*shape)`, `.count`,
    `.shape`, `.num`. A Python layer is no loss layer unless the prototxt gives its top a
    `loss_weight` (it inherits from Layer, not LossLayer). On the OpenCL engine the same
    code runs on the host: reading `.data` brings the values back from the device, and the
    next layer takes the host copy to the device again. An exception raised by the user's
    code becomes a MinicaffeError naming the layer, the module, the class and the method.

        layer { name: "loss" type: "Python" bottom: "ipx" bottom: "ipy" top: "loss"
                python_param { module: "pyloss" layer: "EuclideanLossLayer" }
                loss_weight: 1 }
    """

    type = "Python"

    def __init__(self, layer_param):
        super().__init__(layer_param)
        p = layer_param.python_param
        self.module_name, self.class_name = p.module, p.layer
        self.where = (f"{self.type} layer {self.name!r} "
                      f"({self.module_name or '?'}.{self.class_name or '?'})")
        if not p.module or not p.layer:
            raise MinicaffeError(f"{self.where}: python_param needs both `module` (a module on "
                                 f"the Python path) and `layer` (a class in it)")
        try:
            module = importlib.import_module(p.module)
        except Exception as err:  # ImportError, or anything the module's own code raises
            raise MinicaffeError(f"{self.where}: cannot import module {p.module!r} "
                                 f"({type(err).__name__}: {err}); it must be on the Python path: "
                                 f"add its folder to $PYTHONPATH") from err
        cls = getattr(module, p.layer, None)
        if cls is None:
            raise MinicaffeError(f"{self.where}: module {p.module!r} "
                                 f"({getattr(module, '__file__', '?')}) has no class {p.layer!r}")
        if not (isinstance(cls, type) and issubclass(cls, Layer)):
            raise MinicaffeError(f"{self.where}: {p.module}.{p.layer} is not a subclass of "
                                 f"minicaffe.Layer (pycaffe's caffe.Layer)")
        # Caffe builds the user's object with the LayerParameter (layer_factory.cpp).
        self.python_layer = self._call(cls, "__init__", layer_param)
        # One list, seen by the user as self.blobs and by the Net as this layer's blobs.
        self.blobs = BlobVec(getattr(self.python_layer, "blobs", self.blobs), self.name)
        self.python_layer.blobs = self.blobs
        self.python_layer.type = self.type

    def __getattr__(self, name):
        # pycaffe's net.layers[i] is the user's object itself: let the user's attributes
        # (`net.layer_dict["loss"].diff`) be read through this layer too. Only names this
        # layer lacks get here; `python_layer` itself is missing only mid-construction.
        if name == "python_layer":
            raise AttributeError(name)
        return getattr(self.python_layer, name)

    def _call(self, method, label: str, *args):
        """Run user code; turn whatever it raises into one error naming layer, module, class."""
        try:
            return method(*args)
        except Exception as err:
            # Point at the user's line: the innermost frame outside minicaffe itself.
            frames = [f for f in traceback.extract_tb(err.__traceback__)
                      if not f.filename.startswith(_PACKAGE_DIR)]
            at = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
            raise user_error(err, f"{self.where}: {label}() raised {type(err).__name__}: "
                                  f"{err}{at}") from err

    def layer_setup(self, bottom, top):
        # As Caffe's PythonLayer::LayerSetUp: the attributes first, then the user's setup.
        self.python_layer.param_str = self.layer_param.python_param.param_str
        self.python_layer.phase = int(self.phase)
        if type(self.python_layer).setup is not Layer.setup:  # no setup: nothing to do
            self._call(self.python_layer.setup, "setup", bottom, top)
        # Checked after the user's setup, whose own errors come first (as in pycaffe,
        # where a missing method fails only when it is called).
        for method, signature in (("reshape", "bottom, top"), ("forward", "bottom, top")):
            if getattr(type(self.python_layer), method, None) is getattr(Layer, method):
                raise MinicaffeError(f"{self.where}: class {self.class_name} defines no "
                                     f"{method}(self, {signature})")

    def reshape(self, bottom, top):
        self._call(self.python_layer.reshape, "reshape", bottom, top)

    def forward_cpu(self, bottom, top):
        self._call(self.python_layer.forward, "forward", bottom, top)

    def backward_cpu(self, top, propagate_down, bottom):
        if type(self.python_layer).backward is Layer.backward:
            raise MinicaffeError(f"{self.where}: class {self.class_name} defines no "
                                 f"backward(self, top, propagate_down, bottom), and this net "
                                 f"needs a gradient through the layer")
        self._call(self.python_layer.backward, "backward", top, list(propagate_down), bottom)

    # The user's code reads and writes host memory on both engines.
    forward_gpu, backward_gpu = forward_cpu, backward_cpu
