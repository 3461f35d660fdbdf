r"""RMSProp (Tieleman & Hinton, 2012; Caffe's `rmsprop_solver.cpp`).

Like AdaGrad, but the squared gradients are averaged with exponentially decaying
weights instead of summed, so old gradients are forgotten and the step size does not
shrink for ever. With $\rho$ = `rms_decay` and $\delta$ = `delta`:

$$ h_t = \rho\, h_{t-1} + (1-\rho)\, g^2 \qquad
   \Delta w = \eta\,\mathrm{lr\_mult}\, \frac{g}{\sqrt{h_t} + \delta} $$

As in Caffe, `momentum` must be 0 and `rms_decay` must lie in $[0, 1)$. $h$ is the
history, one blob per parameter, and what the `.solverstate` stores.
Device twin: `opencl/rmsprop.cl`.
"""
from __future__ import annotations

import numpy as np

from minicaffe import opencl
from minicaffe.common import MinicaffeError
from minicaffe.solver import fmt
from minicaffe.solvers.adagrad import check_no_momentum
from minicaffe.solvers.registry import register_solver
from minicaffe.solvers.sgd import SGDSolver, on_device


@register_solver
class RMSPropSolver(SGDSolver):
    """    type: "RMSProp"   base_lr: 0.01   rms_decay: 0.98   delta: 1e-8   (no momentum)"""

    type = "RMSProp"

    def check_param(self) -> None:
        super().check_param()
        check_no_momentum(self)
        decay = self.param.rms_decay
        if not 0 <= decay < 1:  # decay 1 would never let a gradient in
            raise MinicaffeError(f"{self.source}: rms_decay should lie in [0, 1), got {fmt(decay)}")

    def compute_update_value(self, param_id: int, rate: float) -> None:
        p, h = self.net.learnable_params[param_id], self.history[param_id]
        decay, delta = np.float32(self.param.rms_decay), np.float32(self.param.delta)
        local_rate = np.float32(rate * self.net.params_lr[param_id])
        if on_device():
            opencl.kernel("rmsprop.cl", "rmsprop_update")(
                p.count, p.mutable_gpu_diff(), h.mutable_gpu_data(), decay, delta, local_rate)
            return
        g, h = p.cpu_diff(), h.mutable_cpu_data()
        h[...] = (1 - decay) * np.square(g) + decay * h
        p.mutable_cpu_diff()[...] = local_rate * (g / (np.sqrt(h) + delta))
