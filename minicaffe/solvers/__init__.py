"""The solvers, one module per update rule, found by SolverParameter `type`.

`get_solver("lenet_solver.prototxt")` reads the file and builds the solver its `type`
names (or its deprecated `solver_type` enum), like Caffe's SolverRegistry. Adding a
solver is adding a module here whose class carries `@register_solver`.
"""
from __future__ import annotations

import difflib
import os

from minicaffe.common import MinicaffeError
from minicaffe.proto import caffe_pb2
from minicaffe.solver import Solver, read_solver_file, register_solver, solver_registry, upgrade_solver_param
from minicaffe.solvers.adam import AdamSolver
from minicaffe.solvers.nesterov import NesterovSolver
from minicaffe.solvers.sgd import SGDSolver


def get_solver(param_or_path, source: str | None = None, **kwargs) -> Solver:
    """Build the solver a SolverParameter (or a solver prototxt path) asks for."""
    if isinstance(param_or_path, (str, os.PathLike)):
        source = str(param_or_path)
        param = read_solver_file(param_or_path)
    else:
        param = caffe_pb2.SolverParameter()
        param.CopyFrom(param_or_path)
        param = upgrade_solver_param(param, source or "the SolverParameter")
    registry = solver_registry()
    cls = registry.get(param.type)
    if cls is None:
        close = difflib.get_close_matches(param.type, registry, n=2, cutoff=0.5)
        close += [t for t in registry if t.lower() == param.type.lower() and t not in close]
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise MinicaffeError(f"{source or 'the SolverParameter'}: unknown solver type {param.type!r}."
                             f"{hint} Known types: {', '.join(sorted(registry))}.")
    return cls(param, source, **kwargs)


__all__ = ["AdamSolver", "NesterovSolver", "SGDSolver", "Solver", "get_solver", "register_solver",
           "solver_registry"]
