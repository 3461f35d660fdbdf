r"""AdaGrad (Duchi, Hazan & Singer, 2011; Caffe's `adagrad_solver.cpp`).

Each value keeps the running sum of its squared gradients, so a value that has had
large gradients takes small steps from then on. With $\delta$ = `delta`:

$$ h_t = h_{t-1} + g^2 \qquad
   \Delta w = \eta\,\mathrm{lr\_mult}\, \frac{g}{\sqrt{h_t} + \delta} $$

The sum only grows, so the step size only shrinks; there is no momentum, and Caffe
refuses a solver file that sets one. $h$ is the history, one blob per parameter, and
what the `.solverstate` stores. Device twin: `opencl/adagrad.cl`.
"""
from __future__ import annotations

import numpy as np

from minicaffe import opencl
from minicaffe.common import MinicaffeError
from minicaffe.solver import fmt
from minicaffe.solvers.registry import register_solver
from minicaffe.solvers.sgd import SGDSolver, on_device


def check_no_momentum(solver) -> None:
    """AdaGrad and RMSProp scale each step by the gradient history; a momentum term has
    no place in their rule, so (as Caffe CHECKs) setting one is a mistake, not a no-op."""
    if solver.param.momentum != 0:
        raise MinicaffeError(f"{solver.source}: momentum cannot be used with the {solver.type} solver "
                             f"(got momentum: {fmt(solver.param.momentum)}); remove it or set it to 0")


@register_solver
class AdaGradSolver(SGDSolver):
    """    type: "AdaGrad"   base_lr: 0.01   delta: 1e-8   (no momentum)"""

    type = "AdaGrad"

    def check_param(self) -> None:
        super().check_param()
        check_no_momentum(self)

    def compute_update_value(self, param_id: int, rate: float) -> None:
        p, h = self.net.learnable_params[param_id], self.history[param_id]
        delta = np.float32(self.param.delta)
        local_rate = np.float32(rate * self.net.params_lr[param_id])
        if on_device():
            opencl.kernel("adagrad.cl", "adagrad_update")(
                p.count, p.mutable_gpu_diff(), h.mutable_gpu_data(), delta, local_rate)
            return
        g, h = p.cpu_diff(), h.mutable_cpu_data()
        h += np.square(g)
        p.mutable_cpu_diff()[...] = local_rate * (g / (np.sqrt(h) + delta))
