r"""Adam (Kingma & Ba, 2014; Caffe's `adam_solver.cpp`).

With $\beta_1$ = `momentum`, $\beta_2$ = `momentum2`, $\epsilon$ = `delta` and
$t$ = iter + 1, per parameter:

$$ m_t = \beta_1 m_{t-1} + (1-\beta_1) g \qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) g^2 $$
$$ \Delta w = \eta\,\mathrm{lr\_mult}\, \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\,
   \frac{m_t}{\sqrt{v_t} + \epsilon} $$

The bias correction is folded into the rate, as in Caffe (so $\epsilon$ is added to the
uncorrected $\sqrt{v_t}$). The history holds every $m$ first, then every $v$, which is
the order a Caffe `.solverstate` stores them in. Device twin: `opencl/adam.cl`.
"""
from __future__ import annotations

import math

import numpy as np

from minicaffe import opencl
from minicaffe.blob import Blob
from minicaffe.solvers.registry import register_solver
from minicaffe.solvers.sgd import SGDSolver, on_device


@register_solver
class AdamSolver(SGDSolver):
    """    type: "Adam"   base_lr: 0.001   momentum: 0.9   momentum2: 0.999   lr_policy: "fixed" """

    type = "Adam"

    def presolve(self) -> None:
        super().presolve()  # m, one per parameter
        self.history += [Blob(p.shape, name=f"history[{len(self.history) + i}]")
                         for i, p in enumerate(self.net.learnable_params)]  # v

    def compute_update_value(self, param_id: int, rate: float) -> None:
        n = len(self.net.learnable_params)
        p, m, v = self.net.learnable_params[param_id], self.history[param_id], self.history[param_id + n]
        beta1, beta2 = np.float32(self.param.momentum), np.float32(self.param.momentum2)
        eps = np.float32(self.param.delta)
        t = self.iter + 1
        correction = math.sqrt(1.0 - float(beta2) ** t) / (1.0 - float(beta1) ** t)
        local_rate = np.float32(rate * self.net.params_lr[param_id] * correction)
        if on_device():
            opencl.kernel("adam.cl", "adam_update")(
                p.count, p.mutable_gpu_diff(), m.mutable_gpu_data(), v.mutable_gpu_data(),
                beta1, beta2, eps, local_rate)
            return
        g, m, v = p.cpu_diff(), m.mutable_cpu_data(), v.mutable_cpu_data()
        m[...] = (1 - beta1) * g + beta1 * m
        v[...] = (1 - beta2) * np.square(g) + beta2 * v
        p.mutable_cpu_diff()[...] = local_rate * (m / (np.sqrt(v) + eps))
