"""minicaffe: Caffe, re-implemented in readable Python.

The package can stand in for pycaffe in everyday scripts:

    import minicaffe as caffe
    caffe.set_mode_cpu()
    net = caffe.Net("examples/mnist/lenet.prototxt", caffe.TEST, weights="lenet_iter_10000.caffemodel")
    out = net.forward(data=images)            # {"prob": array}
    solver = caffe.get_solver("examples/mnist/lenet_solver.prototxt")
    solver.step(100)
"""
import minicaffe.layers  # noqa: F401  (fills the layer registry)
from minicaffe.blob import Blob
from minicaffe.common import (MinicaffeError, set_random_seed, set_solver_count, set_solver_rank,
                              solver_count, solver_rank)
from minicaffe.layer import Layer, layer_registry
from minicaffe.net import TEST, TRAIN, Net

__version__ = "0.1.0"


def set_mode_cpu() -> None:
    """Run layers on the numpy engine."""
    from minicaffe import common
    common.set_mode(common.CPU)


def set_mode_gpu() -> None:
    """Run layers on the OpenCL engine (the device chosen by `set_device`)."""
    from minicaffe import common
    common.set_mode(common.GPU)


def set_device(device_id: int) -> None:
    from minicaffe import common
    common.set_device(device_id)


def layer_type_list() -> list[str]:
    return sorted(layer_registry())


def has_nccl() -> bool:
    """pycaffe's has_nccl: minicaffe has no NCCL; its multi-device training runs one
    process per device and sums gradients over MPI (`minicaffe.parallel`)."""
    return False


# Loaded on first use only: the solvers import the net and the data layers, and the rest
# import optional libraries or each other.
_LAZY = {
    "get_solver": "minicaffe.solvers", "Solver": "minicaffe.solvers",
    "SGDSolver": "minicaffe.solvers", "NesterovSolver": "minicaffe.solvers",
    "AdaGradSolver": "minicaffe.solvers", "RMSPropSolver": "minicaffe.solvers",
    "AdaDeltaSolver": "minicaffe.solvers", "AdamSolver": "minicaffe.solvers",
    "Classifier": "minicaffe.classifier", "Detector": "minicaffe.detector",
    "NetSpec": "minicaffe.net_spec", "to_proto": "minicaffe.net_spec", "params": "minicaffe.net_spec",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'minicaffe' has no attribute {name!r}")


__all__ = ["Blob", "Layer", "MinicaffeError", "Net", "TEST", "TRAIN", "has_nccl", "layer_type_list",
           "set_device", "set_mode_cpu", "set_mode_gpu", "set_random_seed", "set_solver_count",
           "set_solver_rank", "solver_count", "solver_rank", *_LAZY]
