r"""AdaDelta (Zeiler, 2012; Caffe's `adadelta_solver.cpp`).

Two decaying averages per value: of the squared gradients, $s$, and of the squared
steps taken, $u$. The step is the gradient scaled by the ratio of their root mean
squares, so it carries the units of $w$ and needs no hand-tuned rate. With
$\rho$ = `momentum` (the decay of both averages) and $\delta$ = `delta`:

$$ s_t = \rho\, s_{t-1} + (1-\rho)\, g^2 \qquad
   d = g\, \sqrt{\frac{u_{t-1} + \delta}{s_t + \delta}} \qquad
   u_t = \rho\, u_{t-1} + (1-\rho)\, d^2 $$
$$ \Delta w = \eta\,\mathrm{lr\_mult}\; d $$

$u$ averages the steps *before* the rate is applied; Caffe still multiplies by the
rate at the end, which is why its example solvers set `base_lr: 1.0`. The history
holds every $s$ first, then every $u$ (2 blobs per parameter), the order a Caffe
`.solverstate` stores them in. Device twin: `opencl/adadelta.cl`.
"""
from __future__ import annotations

import numpy as np

from minicaffe import opencl
from minicaffe.blob import Blob
from minicaffe.solvers.registry import register_solver
from minicaffe.solvers.sgd import SGDSolver, on_device


@register_solver
class AdaDeltaSolver(SGDSolver):
    """    type: "AdaDelta"   base_lr: 1.0   momentum: 0.95   delta: 1e-6   lr_policy: "fixed" """

    type = "AdaDelta"

    def presolve(self) -> None:
        super().presolve()  # s, one per parameter
        self.history += [Blob(p.shape, name=f"history[{len(self.history) + i}]")
                         for i, p in enumerate(self.net.learnable_params)]  # u

    def compute_update_value(self, param_id: int, rate: float) -> None:
        n = len(self.net.learnable_params)
        p, s, u = self.net.learnable_params[param_id], self.history[param_id], self.history[param_id + n]
        rho, delta = np.float32(self.param.momentum), np.float32(self.param.delta)
        local_rate = np.float32(rate * self.net.params_lr[param_id])
        if on_device():
            opencl.kernel("adadelta.cl", "adadelta_update")(
                p.count, p.mutable_gpu_diff(), s.mutable_gpu_data(), u.mutable_gpu_data(),
                rho, delta, local_rate)
            return
        s, u = s.mutable_cpu_data(), u.mutable_cpu_data()
        g = p.cpu_diff()
        s[...] = (1 - rho) * np.square(g) + rho * s
        step = g * np.sqrt((u + delta) / (s + delta))
        u[...] = (1 - rho) * np.square(step) + rho * u
        p.mutable_cpu_diff()[...] = local_rate * step
