r"""Nesterov's accelerated gradient (Caffe's `nesterov_solver.cpp`).

Like SGD with momentum, but the step looks ahead along the momentum:

$$ v_t = \mu v_{t-1} + \eta\, g_t \qquad \Delta w = (1 + \mu) v_t - \mu v_{t-1} $$

and the net applies $w \leftarrow w - \Delta w$. Everything else (lr policy, clipping,
normalization, weight decay, snapshots) is SGD's. Device twin: `opencl/nesterov.cl`.
"""
from __future__ import annotations

import numpy as np

from minicaffe import opencl
from minicaffe.solvers.registry import register_solver
from minicaffe.solvers.sgd import SGDSolver, on_device


@register_solver
class NesterovSolver(SGDSolver):
    """    type: "Nesterov"   base_lr: 0.01   momentum: 0.95"""

    type = "Nesterov"

    def compute_update_value(self, param_id: int, rate: float) -> None:
        p, h = self.net.learnable_params[param_id], self.history[param_id]
        momentum = np.float32(self.param.momentum)
        local_rate = np.float32(rate * self.net.params_lr[param_id])
        if on_device():
            opencl.kernel("nesterov.cl", "nesterov_update")(
                p.count, p.mutable_gpu_diff(), h.mutable_gpu_data(), momentum, local_rate)
            return
        v = h.mutable_cpu_data()
        previous = v.copy()
        v[...] = momentum * v + local_rate * p.cpu_diff()
        p.mutable_cpu_diff()[...] = (1 + momentum) * v - momentum * previous
