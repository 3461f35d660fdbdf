r"""SGD with momentum: Caffe's default solver (`sgd_solver.cpp`).

For each learnable parameter $w$ with gradient $g$ (its `diff`), after the net has
accumulated `iter_size` forward/backward passes, `apply_update` does, in Caffe's order:

1. rate $\eta$ from the lr policy; clip: if $\|g\|_2 > c$ over all parameters, $g \mathrel{*}= c / \|g\|_2$;
2. normalize: $g \leftarrow g / \mathrm{iter\_size}$;
3. regularize: $g \leftarrow g + \lambda\,\mathrm{decay\_mult}\, w$ (L2) or $+\lambda\,\mathrm{decay\_mult}\,\mathrm{sign}(w)$ (L1);
4. update value: $v \leftarrow \mu v + \eta\,\mathrm{lr\_mult}\, g$, then $g \leftarrow v$;
5. the net applies $w \leftarrow w - g$.

$v$ is the *history*, one blob per parameter; it is what a `.solverstate` stores.
Subclasses (Nesterov, Adam) change only step 4, `compute_update_value`.

The arithmetic runs on the host arrays: in GPU mode `cpu_diff()` fetches the device
values first, so the result is the same, only slower.
"""
from __future__ import annotations

import logging

import numpy as np

from minicaffe import protoio
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.proto import caffe_pb2
from minicaffe.solver import Solver, fmt, learning_rate, register_solver

logger = logging.getLogger(__name__)


@register_solver
class SGDSolver(Solver):
    """Stochastic gradient descent with momentum and weight decay.

        type: "SGD"   base_lr: 0.01   momentum: 0.9   weight_decay: 0.0005
    """

    type = "SGD"

    def presolve(self) -> None:
        self.history = [Blob(p.shape, name=f"history[{i}]")
                        for i, p in enumerate(self.net.learnable_params)]

    def get_learning_rate(self) -> float:
        rate, step = learning_rate(self.param, self.iter, self.current_step)
        if self.param.lr_policy == "multistep" and step != self.current_step:
            logger.info("MultiStep Status: Iteration %d, step = %d", self.iter, step)
        self.current_step = step
        return rate

    def apply_update(self) -> None:
        rate = self.get_learning_rate()
        if self.param.display and self.iter % self.param.display == 0:
            logger.info("Iteration %d, lr = %s", self.iter, fmt(rate))
        self.clip_gradients()
        for param_id in range(len(self.net.learnable_params)):
            self.normalize(param_id)
            self.regularize(param_id)
            self.compute_update_value(param_id, rate)
        self.net.update()

    def clip_gradients(self) -> None:
        clip = self.param.clip_gradients
        if clip < 0:
            return
        params = self.net.learnable_params
        l2norm = float(np.sqrt(sum(np.sum(np.square(p.cpu_diff(), dtype=np.float64)) for p in params)))
        if l2norm > clip:
            scale = clip / l2norm
            logger.info("Gradient clipping: scaling down gradients (L2 norm %s > %s) by scale factor %s",
                        fmt(l2norm), fmt(clip), fmt(scale))
            for p in params:
                p.mutable_cpu_diff()[...] *= np.float32(scale)

    def normalize(self, param_id: int) -> None:
        # The layers summed iter_size gradients; make it their mean.
        if self.param.iter_size > 1:
            self.net.learnable_params[param_id].mutable_cpu_diff()[...] *= np.float32(1.0 / self.param.iter_size)

    def regularize(self, param_id: int) -> None:
        local_decay = self.param.weight_decay * self.net.params_weight_decay[param_id]
        if not local_decay:
            return
        p = self.net.learnable_params[param_id]
        w = p.cpu_data()
        if self.param.regularization_type == "L2":
            p.mutable_cpu_diff()[...] += np.float32(local_decay) * w
        elif self.param.regularization_type == "L1":
            p.mutable_cpu_diff()[...] += np.float32(local_decay) * np.sign(w)
        else:
            raise MinicaffeError(f"unknown regularization_type {self.param.regularization_type!r}")

    def compute_update_value(self, param_id: int, rate: float) -> None:
        p, h = self.net.learnable_params[param_id], self.history[param_id].mutable_cpu_data()
        local_rate = np.float32(rate * self.net.params_lr[param_id])
        h[...] = local_rate * p.cpu_diff() + np.float32(self.param.momentum) * h
        p.mutable_cpu_diff()[...] = h

    # ---- solver state
    def snapshot_solver_state(self, model_filename: str) -> None:
        state = caffe_pb2.SolverState(iter=self.iter, learned_net=model_filename,
                                      current_step=self.current_step)
        for blob in self.history:
            blob.to_proto(state.history.add())
        filename = self.snapshot_filename(".solverstate")
        logger.info("Snapshotting solver state to binary proto file %s", filename)
        protoio.write_binary(filename, state)

    def restore_solver_state(self, state, state_file: str) -> None:
        if len(state.history) != len(self.history):
            raise MinicaffeError(f"{state_file}: {len(state.history)} history blob(s) stored, but this "
                                 f"{self.type} solver keeps {len(self.history)} for net {self.net.name!r}; "
                                 "the state belongs to another net or solver type")
        logger.info("SGDSolver: restoring history")
        for i, (proto, blob) in enumerate(zip(state.history, self.history)):
            stored = Blob(name=f"history[{i}]")
            stored.from_proto(proto)
            if stored.shape != blob.shape:
                raise MinicaffeError(f"{state_file}: history blob {i} has shape {stored.shape}, the "
                                     f"parameter it belongs to has {blob.shape}")
            blob.mutable_cpu_data()[...] = stored.cpu_data()
