"""The solvers, one module per update rule, found by SolverParameter `type`.

`get_solver("lenet_solver.prototxt")` reads the file and builds the solver its `type`
names (or its deprecated `solver_type` enum), like Caffe's SolverRegistry (see
`registry.py`). Adding a solver is adding a module here whose class carries
`@register_solver`, and importing it below.
"""
from minicaffe.solver import Solver
from minicaffe.solvers.adadelta import AdaDeltaSolver
from minicaffe.solvers.adagrad import AdaGradSolver
from minicaffe.solvers.adam import AdamSolver
from minicaffe.solvers.nesterov import NesterovSolver
from minicaffe.solvers.registry import get_solver, register_solver, solver_registry
from minicaffe.solvers.rmsprop import RMSPropSolver
from minicaffe.solvers.sgd import SGDSolver

__all__ = ["AdaDeltaSolver", "AdaGradSolver", "AdamSolver", "NesterovSolver", "RMSPropSolver", "SGDSolver",
           "Solver", "get_solver", "register_solver", "solver_registry"]
