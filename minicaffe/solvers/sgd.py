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

Each step has a numpy body and an OpenCL body, chosen by the mode as in Caffe's
`switch (Caffe::mode())`. In GPU mode every step runs on the device buffers of the
parameters and of the history (which lives on the device too), so training copies
nothing between host and device but the input batch and the scalar loss. The
device twin of this module is `opencl/sgd.cl`; the other steps reuse `opencl/math.cl`.
A `.solverstate` is the same file from either engine: snapshots read the device
values back (`cpu_data()` syncs), and a restore writes the host copy, which the
next device read copies over.
"""
from __future__ import annotations

import logging

import numpy as np

from minicaffe import common, opencl
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.proto import caffe_pb2
from minicaffe.solver import Solver, fmt, learning_rate
from minicaffe.solvers.registry import register_solver

logger = logging.getLogger(__name__)


def on_device() -> bool:
    """True in GPU mode: the update runs as OpenCL kernels on the device buffers."""
    return common.mode() == common.GPU


def scale_diff(blob: Blob, scale: float) -> None:
    """diff *= scale, on whichever side the mode computes (Caffe's Blob::scale_diff)."""
    if on_device():
        opencl.scal(blob.count, scale, blob.mutable_gpu_diff())
    else:
        blob.mutable_cpu_diff()[...] *= np.float32(scale)


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
        if on_device():  # one reduction per parameter; only the scalar comes back
            sumsq = sum(opencl.sumsq(p.count, p.gpu_diff()) for p in params)
        else:
            sumsq = sum(float(np.sum(np.square(p.cpu_diff(), dtype=np.float64))) for p in params)
        l2norm = float(np.sqrt(sumsq))
        if l2norm > clip:
            scale = clip / l2norm
            logger.info("Gradient clipping: scaling down gradients (L2 norm %s > %s) by scale factor %s",
                        fmt(l2norm), fmt(clip), fmt(scale))
            for p in params:
                scale_diff(p, scale)

    def normalize(self, param_id: int) -> None:
        # The layers summed iter_size gradients; make it their mean.
        if self.param.iter_size > 1:
            scale_diff(self.net.learnable_params[param_id], 1.0 / self.param.iter_size)

    def regularize(self, param_id: int) -> None:
        local_decay = self.param.weight_decay * self.net.params_weight_decay[param_id]
        if not local_decay:
            return
        p, kind = self.net.learnable_params[param_id], self.param.regularization_type
        if kind not in ("L2", "L1"):
            raise MinicaffeError(f"unknown regularization_type {kind!r}")
        if on_device():
            if kind == "L2":  # g += decay w
                opencl.axpy(p.count, local_decay, p.gpu_data(), p.mutable_gpu_diff())
            else:  # g += decay sign(w)
                opencl.kernel("sgd.cl", "sgd_l1_regularize")(
                    p.count, np.float32(local_decay), p.gpu_data(), p.mutable_gpu_diff())
            return
        w = p.cpu_data()
        p.mutable_cpu_diff()[...] += np.float32(local_decay) * (w if kind == "L2" else np.sign(w))

    def compute_update_value(self, param_id: int, rate: float) -> None:
        p, h = self.net.learnable_params[param_id], self.history[param_id]
        local_rate = np.float32(rate * self.net.params_lr[param_id])
        momentum = np.float32(self.param.momentum)
        if on_device():
            opencl.kernel("sgd.cl", "sgd_update")(
                p.count, p.mutable_gpu_diff(), h.mutable_gpu_data(), momentum, local_rate)
            return
        h.mutable_cpu_data()[...] = local_rate * p.cpu_diff() + momentum * h.cpu_data()
        p.mutable_cpu_diff()[...] = h.cpu_data()

    # ---- solver state
    def snapshot_solver_state(self, model_filename: str) -> None:
        state = caffe_pb2.SolverState(iter=self.iter, learned_net=model_filename,
                                      current_step=self.current_step)
        self.write_solver_state(state, self.history)

    def restore_solver_state(self, state, state_file: str) -> None:
        if len(state.history) != len(self.history):
            raise MinicaffeError(f"{state_file}: {len(state.history)} history blob(s) stored, but this "
                                 f"{self.type} solver keeps {len(self.history)} for net {self.net.name!r}; "
                                 "the state belongs to another net or solver type")
        logger.info("SGDSolver: restoring history")
        for i, (proto, blob) in enumerate(zip(state.history, self.history)):
            stored = Blob(name=f"history[{i}]")
            try:
                stored.from_proto(proto)
            except MinicaffeError as err:
                raise MinicaffeError(f"{state_file}: {err}") from None
            if stored.shape != blob.shape:
                raise MinicaffeError(f"{state_file}: history blob {i} has shape {stored.shape}, the "
                                     f"parameter it belongs to has {blob.shape}")
            blob.mutable_cpu_data()[...] = stored.cpu_data()
