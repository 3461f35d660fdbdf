r"""Solver: the training loop, learning-rate policies, testing and snapshots (Caffe's `solver.cpp`).

A solver owns one *train net* and any number of *test nets* built from a
SolverParameter (`lenet_solver.prototxt`). One iteration of `step` is:

1. zero every parameter diff, and every `test_interval` iterations run the test nets;
2. run forward + backward `iter_size` times, accumulating parameter gradients (the
   layers add into `diff`, which is what makes accumulation free);
3. every `display` iterations, log the smoothed loss and the train net's outputs;
4. `apply_update`: the subclass (SGD, Nesterov, Adam, ...) turns diff into an update
   and the net applies `data -= diff`;
5. `iter += 1`, snapshot every `snapshot` iterations, and obey SIGINT/SIGHUP.

In data-parallel training (`minicaffe.parallel`) every process runs this loop on its own
share of the data; only the root solver (rank 0) tests and snapshots, as in Caffe.

`iter` always counts the updates made so far, so a snapshot named `_iter_500` holds the
weights after 500 updates, and resuming from it continues as if never interrupted.

Learning-rate policies (`lr_policy`), with $t$ the iteration:

| policy    | rate                                                          |
|-----------|---------------------------------------------------------------|
| fixed     | $\eta_0$                                                      |
| step      | $\eta_0 \gamma^{\lfloor t / \mathrm{stepsize} \rfloor}$       |
| exp       | $\eta_0 \gamma^{t}$                                           |
| inv       | $\eta_0 (1 + \gamma t)^{-p}$                                  |
| multistep | $\eta_0 \gamma^{k}$, $k$ = stepvalues passed so far           |
| poly      | $\eta_0 (1 - t / \mathrm{max\_iter})^{p}$                     |
| sigmoid   | $\eta_0 / (1 + e^{-\gamma (t - \mathrm{stepsize})})$           |

Logs are Caffe's lines, so Caffe's `tools/extra/parse_log.py` reads them (see `log.py`).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from pathlib import Path

from google.protobuf import text_format

from minicaffe import common, protoio
from minicaffe import log as glog
from minicaffe.common import MinicaffeError
from minicaffe.io import hdf5
from minicaffe.net import Net
from minicaffe.proto import caffe_pb2
from minicaffe.signals import SignalHandler, SolverAction

logger = logging.getLogger(__name__)
fmt = glog.format_number

SolverParameter = caffe_pb2.SolverParameter
LR_POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")

# The deprecated `solver_type` enum, and the `type` string each value became.
_SOLVER_TYPE_NAMES = {SolverParameter.SGD: "SGD", SolverParameter.NESTEROV: "Nesterov",
                      SolverParameter.ADAGRAD: "AdaGrad", SolverParameter.RMSPROP: "RMSProp",
                      SolverParameter.ADADELTA: "AdaDelta", SolverParameter.ADAM: "Adam"}

# ---------------------------------------------------------------- reading solver files

def upgrade_solver_param(param: SolverParameter, source: str = "the SolverParameter") -> SolverParameter:
    """Replace the deprecated `solver_type: NESTEROV` enum by `type: "Nesterov"`, as Caffe does."""
    if param.HasField("solver_type"):
        if param.HasField("type"):
            raise MinicaffeError(f"{source}: give the solver's type once: the deprecated field "
                                 f"solver_type and the field type cannot both be set")
        param.type = _SOLVER_TYPE_NAMES[param.solver_type]
        param.ClearField("solver_type")
        logger.info("Successfully upgraded %s from the deprecated 'solver_type' field (enum) "
                    "to the 'type' field (string): type: \"%s\"", source, param.type)
    return param


def read_solver_file(path) -> SolverParameter:
    """Read a solver prototxt the way `caffe train` does.

    Besides upgrading `solver_type`, Caffe fills a missing `snapshot_prefix` with the
    solver file's path minus its extension, and turns a prefix that is a folder into
    `<folder>/<solver file stem>`. Paths inside the file stay relative to the current
    directory, as in Caffe.
    """
    param = upgrade_solver_param(protoio.read_solver_param(path), str(path))
    if not param.HasField("snapshot_prefix"):
        param.snapshot_prefix = str(Path(path).with_suffix(""))
        logger.info("snapshot_prefix was not specified and is set to %s", param.snapshot_prefix)
    elif os.path.isdir(param.snapshot_prefix):
        param.snapshot_prefix = str(Path(param.snapshot_prefix) / Path(path).stem)
        logger.info("snapshot_prefix was a directory and is replaced to %s", param.snapshot_prefix)
    return param


# ---------------------------------------------------------------- learning-rate policies

def _pow(x: float, y: float) -> float:
    """C's pow: inf on overflow and nan for a negative base with a fractional exponent."""
    try:
        return math.pow(x, y)
    except OverflowError:
        return math.inf
    except ValueError:
        return math.nan


def learning_rate(param: SolverParameter, it: int, current_step: int = 0) -> tuple[float, int]:
    """The rate at iteration `it` and the updated step counter (Caffe's GetLearningRate).

    `current_step` matters to `multistep`, which moves past at most one step value per
    call, as Caffe does: it expects to be asked once per iteration, in order.
    """
    policy, base, gamma = param.lr_policy, param.base_lr, param.gamma
    if policy == "fixed":
        return base, current_step
    if policy == "step":
        current_step = it // param.stepsize
        return base * _pow(gamma, current_step), current_step
    if policy == "exp":
        return base * _pow(gamma, it), current_step
    if policy == "inv":
        return base * _pow(1.0 + gamma * it, -param.power), current_step
    if policy == "multistep":
        if current_step < len(param.stepvalue) and it >= param.stepvalue[current_step]:
            current_step += 1
        return base * _pow(gamma, current_step), current_step
    if policy == "poly":
        return base * _pow(1.0 - it / param.max_iter, param.power), current_step
    if policy == "sigmoid":
        z = -gamma * (it - param.stepsize)
        return (0.0 if z > 700 else base / (1.0 + math.exp(z))), current_step
    raise MinicaffeError(f"unknown lr_policy {policy!r}; known policies: {', '.join(LR_POLICIES)}")


def check_lr_policy(param: SolverParameter, source: str) -> None:
    """The checks Caffe makes on the first update, made up front and naming the file."""
    policy = param.lr_policy
    if not policy:
        raise MinicaffeError(f"{source}: lr_policy is not set; choose one of {', '.join(LR_POLICIES)}")
    if policy not in LR_POLICIES:
        raise MinicaffeError(f"{source}: unknown lr_policy {policy!r}; known policies: "
                             f"{', '.join(LR_POLICIES)}")
    if policy in ("step", "sigmoid") and param.stepsize <= 0:
        raise MinicaffeError(f"{source}: lr_policy {policy!r} needs stepsize > 0, got {param.stepsize}")
    # Caffe checks gamma >= 0 for every policy that reads gamma, sigmoid included.
    if policy in ("step", "exp", "inv", "multistep", "sigmoid") and param.gamma < 0:
        raise MinicaffeError(f"{source}: lr_policy {policy!r} needs gamma >= 0, got {fmt(param.gamma)}")
    if policy == "poly" and param.max_iter <= 0:
        raise MinicaffeError(f"{source}: lr_policy 'poly' needs max_iter > 0, got {param.max_iter}")


# ---------------------------------------------------------------- the Solver

class Solver:
    """Base of every solver: the loop, testing, snapshots; subclasses supply the update rule.

    A subclass sets `type` (the SolverParameter `type` string) and implements
    `apply_update`, `snapshot_solver_state(model_filename)` and `restore_solver_state(state)`.

        solver = get_solver("lenet_solver.prototxt")   # or SGDSolver(param)
        solver.solve()                                # or solver.step(100)
    """

    type = ""

    def __init__(self, param, source: str | None = None, *,
                 sigint_effect: str = SolverAction.STOP, sighup_effect: str = SolverAction.SNAPSHOT):
        if isinstance(param, (str, os.PathLike)):
            source, param = str(param), read_solver_file(param)
        else:
            copy = SolverParameter()
            copy.CopyFrom(param)
            param = upgrade_solver_param(copy, source or "the SolverParameter")
        self.param: SolverParameter = param
        self.source = source or "the SolverParameter"
        self.sigint_effect, self.sighup_effect = sigint_effect, sighup_effect
        self.action_request_function = None  # a callable returning a SolverAction
        self.callbacks: list[tuple] = []      # (on_start, on_gradients_ready) pairs: add_callback
        logger.info("Initializing solver from parameters: \n%s", text_format.MessageToString(param))
        self.check_param()
        self.check_snapshot_write_permissions()
        # The nets run on the process's engine (set_mode_cpu / set_mode_gpu), as in
        # pycaffe: building a solver does not switch it. `minicaffe train` picks the engine
        # from --gpu or solver_mode before it builds the solver, as Caffe's tool does.
        # Seed before any net exists: fillers draw the initial weights while nets are built.
        # In data-parallel training each solver seeds random_seed + its rank, as Caffe
        # does, so dropout and the like differ per solver (rank 0's weights are broadcast).
        if param.random_seed >= 0:
            common.set_random_seed(param.random_seed + common.solver_rank())
        self.net: Net = self.init_train_net()
        self.test_nets: list[Net] = self.init_test_nets()
        self.load_weights()
        self.mean_scores: list[list[float]] = [[] for _ in self.test_nets]
        logger.info("Solver scaffolding done.")
        self.iter = 0
        self.current_step = 0
        self.losses: list[float] = []
        self.smoothed_loss = 0.0
        self.requested_early_exit = False
        self.presolve()

    # ---- setup
    def check_param(self) -> None:
        p, src = self.param, self.source
        if p.average_loss < 1:
            raise MinicaffeError(f"{src}: average_loss must be at least 1, got {p.average_loss}")
        if p.iter_size < 1:
            raise MinicaffeError(f"{src}: iter_size must be at least 1, got {p.iter_size}")
        check_lr_policy(p, src)
        if p.regularization_type not in ("L1", "L2"):
            raise MinicaffeError(f"{src}: unknown regularization_type {p.regularization_type!r}; "
                                 "use L2 or L1")

    def check_snapshot_write_permissions(self) -> None:
        """Fail now, not after hours of training, if snapshots cannot be written.

        As in Caffe, the prefix's directory must exist: it is never created for you.
        """
        if not self.param.snapshot or not common.root_solver():  # only the root snapshots
            return
        if not self.param.HasField("snapshot_prefix"):
            raise MinicaffeError(f"{self.source}: snapshot is set but snapshot_prefix is not")
        folder = Path(self.param.snapshot_prefix).parent
        if not folder.is_dir():
            raise MinicaffeError(f"{self.source}: snapshot_prefix {self.param.snapshot_prefix!r} is in "
                                 f"the directory {str(folder)!r}, which does not exist; create it "
                                 f"(mkdir -p {folder}) or change snapshot_prefix")
        probe = self.snapshot_filename(".tempfile", 0)
        try:
            with open(probe, "w"):
                pass
            os.remove(probe)
        except OSError:
            raise MinicaffeError(f"{self.source}: cannot write to snapshot prefix "
                                 f"{self.param.snapshot_prefix!r}. Make sure that the directory "
                                 "exists and is writeable.") from None

    def _read_net(self, path: str, field: str):
        try:
            return protoio.read_net_param(path)
        except MinicaffeError as err:
            raise MinicaffeError(f"{err} (the net given by {field!r} in {self.source}; paths are "
                                 "relative to the current directory)") from None

    def init_train_net(self) -> Net:
        p = self.param
        fields = ("net", "net_param", "train_net", "train_net_param")
        given = [f for f in fields if p.HasField(f)]
        if not given:
            raise MinicaffeError(f"{self.source}: no train net; give one of these fields: {', '.join(fields)}")
        if len(given) > 1:
            raise MinicaffeError(f"{self.source}: give the train net once, but {', '.join(given)} are "
                                 "all set")
        field = given[0]
        if field.endswith("_param"):
            logger.info("Creating training net specified in %s.", field)
            net_param = caffe_pb2.NetParameter()
            net_param.CopyFrom(getattr(p, field))
            where = f"{field} in {self.source}"
        else:
            logger.info("Creating training net from %s file: %s", field, getattr(p, field))
            net_param = self._read_net(getattr(p, field), field)
            where = getattr(p, field)
        # Precedence, lowest first: TRAIN, the net's own state, the solver's train_state.
        state = caffe_pb2.NetState(phase=caffe_pb2.TRAIN)
        state.MergeFrom(net_param.state)
        state.MergeFrom(p.train_state)
        net_param.state.CopyFrom(state)
        return Net(net_param, source=where)

    def init_test_nets(self) -> list[Net]:
        p, src = self.param, self.source
        if p.HasField("net") and p.HasField("net_param"):
            raise MinicaffeError(f"{src}: both net and net_param are set; give one")
        num_generic = int(p.HasField("net") or p.HasField("net_param"))
        num_specific = len(p.test_net_param) + len(p.test_net)
        # A generic net (net / net_param) serves as many test nets as test_iter has values left.
        if (num_generic and len(p.test_iter) < num_specific) or \
                (not num_generic and len(p.test_iter) != num_specific):
            raise MinicaffeError(f"{src}: test_iter must be specified for each test network: "
                                 f"{num_specific} test net(s), {len(p.test_iter)} test_iter value(s)")
        num_instances = num_specific + (len(p.test_iter) - num_specific if num_generic else 0)
        if p.test_state and len(p.test_state) != num_instances:
            raise MinicaffeError(f"{src}: test_state must be unspecified or specified once per test "
                                 f"net: {num_instances} test net(s), {len(p.test_state)} test_state(s)")
        if num_instances and p.test_interval <= 0:
            raise MinicaffeError(f"{src}: {num_instances} test net(s) but test_interval is "
                                 f"{p.test_interval}; set test_interval > 0")
        sources, params = [], []
        for net_param in p.test_net_param:
            sources.append(f"test_net_param in {src}")
            params.append(net_param)
        for path in p.test_net:
            sources.append(path)
            params.append(self._read_net(path, "test_net"))
        for _ in range(num_instances - num_specific):
            if p.HasField("net_param"):
                sources.append(f"net_param in {src}")
                params.append(p.net_param)
            else:
                sources.append(p.net)
                params.append(self._read_net(p.net, "net"))
        nets = []
        for i, (where, net_param) in enumerate(zip(sources, params)):
            copy = caffe_pb2.NetParameter()
            copy.CopyFrom(net_param)
            state = caffe_pb2.NetState(phase=caffe_pb2.TEST)
            state.MergeFrom(copy.state)
            if p.test_state:
                state.MergeFrom(p.test_state[i])
            copy.state.CopyFrom(state)
            logger.info("Creating test net (#%d) specified by %s", i, where)
            net = Net(copy, source=where)
            net.debug_info = p.debug_info  # the solver's debug_info wins, as in Caffe
            nets.append(net)
        return nets

    def load_weights(self) -> None:
        """Finetune from the `weights` field: each entry is a ','-separated list of
        .caffemodel files, copied into the train net and every test net (Caffe's
        LoadNetWeights). `minicaffe train --weights W` puts W there."""
        for entry in self.param.weights:
            for path in (name.strip() for name in entry.split(",")):
                logger.info("Finetuning from %s", path)
                for net in (self.net, *self.test_nets):
                    net.copy_trained_layers_from(path)

    def presolve(self) -> None:
        """Subclasses allocate their history here (Caffe's PreSolve)."""

    # ---- training
    def step(self, iters: int) -> None:
        """Run `iters` iterations (fewer if a signal asks to stop)."""
        p = self.param
        start_iter, stop_iter = self.iter, self.iter + iters
        self.losses.clear()
        self.smoothed_loss = 0.0
        iterations_last = self.iter
        timer = time.perf_counter()
        with glog.progress(total=max(stop_iter, p.max_iter), initial=start_iter,
                           desc=self.net.name or "training") as bar:
            while self.iter < stop_iter:
                self.net.clear_param_diffs()
                if p.test_interval and self.iter % p.test_interval == 0 and \
                        (self.iter > 0 or p.test_initialization) and common.root_solver():
                    self.test_all()
                    if self.requested_early_exit:
                        break  # a stop was asked for while testing
                for on_start, _ in self.callbacks:
                    on_start()
                display = p.display and self.iter % p.display == 0
                # Per-layer debug lines only on the iterations that display, as in Caffe.
                self.net.debug_info = bool(display and p.debug_info)
                loss = 0.0
                for _ in range(p.iter_size):
                    pass_loss = self.net.forward_backward()
                    if not math.isfinite(pass_loss):
                        self.stop_on_non_finite_loss(pass_loss)
                    loss += pass_loss
                loss /= p.iter_size
                self.update_smoothed_loss(loss, start_iter, p.average_loss)
                if display:
                    lapse = time.perf_counter() - timer
                    per_s = (self.iter - iterations_last) / (lapse or 1)
                    logger.info("Iteration %d (%s iter/s, %ss/%d iters), loss = %s", self.iter,
                                fmt(per_s), fmt(lapse), p.display, fmt(self.smoothed_loss))
                    timer, iterations_last = time.perf_counter(), self.iter
                    self._log_outputs("Train", self.net, [b.cpu_data().ravel() for b in self.net.output_blobs])
                for _, on_gradients_ready in self.callbacks:
                    on_gradients_ready()
                self.apply_update()
                # iter counts the updates made: a snapshot "_iter_N" holds N updates.
                self.iter += 1
                bar.update(1)
                bar.set_postfix_str(f"loss={fmt(self.smoothed_loss)}", refresh=False)

                request = self.requested_action()
                if ((p.snapshot and self.iter % p.snapshot == 0) or request == SolverAction.SNAPSHOT) \
                        and common.root_solver():
                    self.snapshot()
                if request == SolverAction.STOP:
                    self.requested_early_exit = True
                    break

    def add_callback(self, on_start, on_gradients_ready) -> None:
        """Call `on_start()` at the start of every iteration (after any testing) and
        `on_gradients_ready()` once the gradients are computed, just before the update
        (pycaffe's add_callback; Caffe's multi-GPU training hooks in here)."""
        self.callbacks.append((on_start, on_gradients_ready))

    def share_weights(self, net: Net) -> None:
        """Let `net` use the train net's parameter memory, by layer name (pycaffe's
        share_weights): a net built by the script then sees every update."""
        net.share_trained_layers_with(self.net)

    def stop_on_non_finite_loss(self, loss: float) -> None:
        """Stop training: the loss of this iteration's pass is NaN or infinite.

        Caffe trains on, logging `loss = nan` until max_iter; nothing can be learned from
        there, so minicaffe stops with a MinicaffeError naming the iteration and where the
        first non-finite value appeared (`Net.find_non_finite`, which reads the pass just
        run: checked after each pass, so with iter_size > 1 the guilty pass is the one
        read). Only this scalar check runs on every iteration. No snapshot is written:
        the weights are diverging, and the last snapshot holds better ones.
        """
        where = self.net.find_non_finite() or (
            "every top, diff and weight is finite, so the weighted sum of the loss blobs overflowed")
        raise MinicaffeError(f"iteration {self.iter}: loss is {fmt(loss)}; {where}. Training "
                             "stopped without writing a snapshot.")

    def solve(self, resume_file=None) -> None:
        """Train to `max_iter` (resuming from a .solverstate if given), then snapshot and test."""
        p = self.param
        logger.info("Solving %s", self.net.name)
        logger.info("Learning Rate Policy: %s", p.lr_policy)
        self.requested_early_exit = False
        handler = None
        if self.action_request_function is None:
            handler = SignalHandler(self.sigint_effect, self.sighup_effect)
            self.action_request_function = handler.check_for_signals
        try:
            with handler if handler is not None else contextlib.nullcontext():
                if resume_file:
                    logger.info("Restoring previous solver status from %s", resume_file)
                    self.restore(resume_file)
                start_iter = self.iter
                self.step(p.max_iter - self.iter)
                # A final snapshot, unless this iteration was just saved.
                if p.snapshot_after_train and (not p.snapshot or self.iter % p.snapshot != 0) \
                        and common.root_solver():
                    self.snapshot()
                if self.requested_early_exit:
                    logger.info("Optimization stopped early.")
                    return
                # The weights have had max_iter updates: one more forward pass shows their loss.
                if p.display and self.iter % p.display == 0:
                    loss = self.net.forward_loss()
                    self.update_smoothed_loss(loss, start_iter, p.average_loss)
                    logger.info("Iteration %d, loss = %s", self.iter, fmt(self.smoothed_loss))
                if p.test_interval and self.iter % p.test_interval == 0 and common.root_solver():
                    self.test_all()
                logger.info("Optimization Done.")
        finally:
            if handler is not None:
                self.action_request_function = None

    def update_smoothed_loss(self, loss: float, start_iter: int, average_loss: int) -> None:
        """Mean of the last `average_loss` losses, kept in a ring buffer."""
        if len(self.losses) < average_loss:
            self.losses.append(loss)
            size = len(self.losses)
            self.smoothed_loss = (self.smoothed_loss * (size - 1) + loss) / size
        else:
            idx = (self.iter - start_iter) % average_loss
            self.smoothed_loss += (loss - self.losses[idx]) / average_loss
            self.losses[idx] = loss

    def requested_action(self) -> str:
        return self.action_request_function() if self.action_request_function else SolverAction.NONE

    def apply_update(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement apply_update")

    # ---- testing
    def test_all(self) -> None:
        for test_net_id in range(len(self.test_nets)):
            if self.requested_early_exit:
                break
            self.test(test_net_id)

    def test(self, test_net_id: int = 0) -> None:
        """Average each test-net output over test_iter batches and log it."""
        p = self.param
        logger.info("Iteration %d, Testing net (#%d)", self.iter, test_net_id)
        test_net = self.test_nets[test_net_id]
        test_net.share_trained_layers_with(self.net)
        scores = None
        loss = 0.0
        for _ in range(p.test_iter[test_net_id]):
            request = self.requested_action()
            while request != SolverAction.NONE:
                if request == SolverAction.SNAPSHOT:
                    self.snapshot()
                elif request == SolverAction.STOP:
                    self.requested_early_exit = True
                request = self.requested_action()
            if self.requested_early_exit:
                break
            iter_loss = test_net.forward_loss()
            if p.test_compute_loss:
                loss += iter_loss
            values = [b.cpu_data().ravel().astype(float) for b in test_net.output_blobs]
            scores = values if scores is None else [s + v for s, v in zip(scores, values)]
        if self.requested_early_exit:
            logger.info("Test interrupted.")
            return
        if p.test_compute_loss:
            logger.info("Test loss: %s", fmt(loss / p.test_iter[test_net_id]))
        means = [s / p.test_iter[test_net_id] for s in (scores or [])]
        self.mean_scores[test_net_id] = [float(v) for m in means for v in m]
        self._log_outputs("Test", test_net, means)

    @staticmethod
    def _log_outputs(kind: str, net: Net, values) -> None:
        """`    Train net output #0: loss = 0.31 (* 1 = 0.31 loss)`, one line per value."""
        index = 0
        for name, weight, vec in zip(net.output_blob_names, net.output_blob_loss_weights, values):
            for v in vec:
                suffix = f" (* {fmt(weight)} = {fmt(weight * v)} loss)" if weight else ""
                logger.info("    %s net output #%d: %s = %s%s", kind, index, name, fmt(v), suffix)
                index += 1

    # ---- snapshots
    def snapshot_filename(self, extension: str, it: int | None = None) -> str:
        return f"{self.param.snapshot_prefix}_iter_{self.iter if it is None else it}{extension}"

    def snapshot(self) -> None:
        """Write `<prefix>_iter_N.caffemodel` and `<prefix>_iter_N.solverstate`, each atomically.

        With `snapshot_format: HDF5` the files are `.caffemodel.h5` and `.solverstate.h5`
        in Caffe's HDF5 layout (see `minicaffe.io.hdf5`).
        """
        if self.param.snapshot_format == SolverParameter.HDF5:
            model_filename = self.snapshot_filename(".caffemodel.h5")
            logger.info("Snapshotting to HDF5 file %s", model_filename)
            self.net.save_hdf5(model_filename, write_diff=self.param.snapshot_diff)
        else:
            model_filename = self.snapshot_filename(".caffemodel")
            logger.info("Snapshotting to binary proto file %s", model_filename)
            protoio.write_binary(model_filename, self.net.to_proto(write_diff=self.param.snapshot_diff))
        self.snapshot_solver_state(model_filename)

    def write_solver_state(self, state: caffe_pb2.SolverState, history) -> None:
        """Write `state` (iter, learned_net, current_step) and the `history` blobs in the
        solver's snapshot_format; the solvers call this from snapshot_solver_state."""
        if self.param.snapshot_format == SolverParameter.HDF5:
            filename = self.snapshot_filename(".solverstate.h5")
            logger.info("Snapshotting solver state to HDF5 file %s", filename)
            hdf5.save_solver_state(filename, state, history)
            return
        del state.history[:]
        for blob in history:
            blob.to_proto(state.history.add())
        filename = self.snapshot_filename(".solverstate")
        logger.info("Snapshotting solver state to binary proto file %s", filename)
        protoio.write_binary(filename, state)

    def snapshot_solver_state(self, model_filename: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement snapshot_solver_state")

    def restore(self, state_file) -> None:
        """Continue from a .solverstate (or, by its `.h5` suffix as in Caffe, a
        .solverstate.h5): iteration, step, history and the weights it names."""
        if hdf5.is_hdf5(state_file):
            state = hdf5.load_solver_state(state_file)
        else:
            state = protoio.read_binary(state_file, caffe_pb2.SolverState())
        self.iter = state.iter
        if state.HasField("learned_net"):
            learned = Path(state.learned_net)
            # Caffe stores the path as written; if the run moved, look beside the state file.
            if not learned.exists() and (Path(state_file).parent / learned.name).exists():
                learned = Path(state_file).parent / learned.name
            try:
                self.net.copy_trained_layers_from(str(learned))
            except MinicaffeError as err:  # a damaged state can name any file: say which state
                raise MinicaffeError(f"{state_file}: cannot load the weights it names "
                                     f"(learned_net {state.learned_net!r}): {err}") from None
        self.current_step = state.current_step
        self.restore_solver_state(state, str(state_file))
        # Data layers read batch after batch; put them where a straight run would be now.
        for layer in self.net.data_layers():
            layer.set_batch_index(self.iter * self.param.iter_size)

    def restore_solver_state(self, state, state_file: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement restore_solver_state")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.source!r} iter={self.iter}>"
