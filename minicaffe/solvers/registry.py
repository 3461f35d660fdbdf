"""The solver registry: SolverParameter `type` name -> solver class (Caffe's SolverRegistry).

A solver module registers its class with `@register_solver`; `get_solver` builds the one a
solver file asks for. The package `minicaffe.solvers` imports every solver module, so by
the time anything here can be imported, every solver is registered.
"""
from __future__ import annotations

import os

from minicaffe.common import MinicaffeError, did_you_mean
from minicaffe.proto import caffe_pb2
from minicaffe.solver import Solver, read_solver_file, upgrade_solver_param

_REGISTRY: dict[str, type[Solver]] = {}


def register_solver(cls):
    """Class decorator: make `cls` buildable by its SolverParameter `type` name."""
    if _REGISTRY.get(cls.type, cls) is not cls:
        raise TypeError(f"solver type {cls.type!r} registered twice")
    _REGISTRY[cls.type] = cls
    return cls


def solver_registry() -> dict[str, type[Solver]]:
    return dict(_REGISTRY)


def get_solver(param_or_path, source: str | None = None, **kwargs) -> Solver:
    """Build the solver a SolverParameter (or a solver prototxt path) asks for.

    The type comes from `type` (or the deprecated `solver_type` enum); a misspelt one
    is an error that suggests the nearest known names.
    """
    if isinstance(param_or_path, (str, os.PathLike)):
        source = str(param_or_path)
        param = read_solver_file(param_or_path)
    else:
        param = caffe_pb2.SolverParameter()
        param.CopyFrom(param_or_path)
        param = upgrade_solver_param(param, source or "the SolverParameter")
    cls = _REGISTRY.get(param.type)
    if cls is None:
        raise MinicaffeError(f"{source or 'the SolverParameter'}: unknown solver type {param.type!r}."
                             f"{did_you_mean(param.type, _REGISTRY)} Known types: "
                             f"{', '.join(sorted(_REGISTRY))}.")
    return cls(param, source, **kwargs)
