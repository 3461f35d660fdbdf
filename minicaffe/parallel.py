r"""Data-parallel training on many processes and machines, over MPI.

Caffe trains one net on several GPUs by *data parallelism* (`parallel.cpp`, the `NCCL`
class; P2PSync before it): every GPU holds a full copy of the net and its own solver,
reads its own share of the training data, and the solvers agree on every update. The
recipe, which minicaffe follows with one process per solver and MPI in place of NCCL:

1. **Start equal.** The root solver (rank 0) broadcasts its weights to the others
   (Caffe's `NCCL::Broadcast`), so each copy starts from the same point whatever its
   random seed. minicaffe broadcasts the solver state too (iteration, learning-rate step,
   momentum history), so a run resumed with `--snapshot` needs the snapshot on rank 0's
   machine only.
2. **Different data.** Item $i$ of a Data layer's database goes to rank $i \bmod N$
   (Caffe's `DataLayer::Skip`), so $N$ solvers with batch $B$ see $NB$ different items
   per iteration.
3. **Average the gradients.** When the gradients are ready, just before the update
   (`Solver` callback `on_gradients_ready`), the diffs are summed over the ranks
   (Allreduce) and scaled by $1/N$ (Caffe's `ncclAllReduce` + `caffe_gpu_scal(1/solver_count)`).
   Every solver then holds the same averaged gradient and the same weights, so it makes
   the same update: the weights stay equal without ever being sent again.

The averaged gradient over $N$ batches of $B$ is the gradient of one batch of $NB$: an
$N$-rank run takes the steps of one process with `iter_size: N` over the same items
(equal up to float rounding; `tests/test_parallel.py` checks it). As in Caffe the batch
size in the prototxt is per solver: 2 ranks of `batch_size: 64` learn with 128 per step.

Only the root solver logs (the others print warnings and errors), tests and snapshots.
From the command line:

    mpiexec -n 2 minicaffe train --solver examples/mnist/lenet_solver.prototxt
    mpiexec -n 2 minicaffe train --solver S --gpu 0,1   # rank r on the r-th device

From Python (run the script with `mpiexec -n 2 python train.py`):

    import minicaffe as caffe
    from minicaffe import parallel
    comm = parallel.init()                      # solver_count / solver_rank from MPI
    solver = caffe.get_solver("lenet_solver.prototxt")
    parallel.MPIDataParallel(solver, comm)      # broadcast from rank 0, hook the Allreduce
    solver.solve()

`init` must come before the solver is built: the solver seeds `random_seed + rank` and
the Data layers pick their share while they are set up. Resuming from Python: restore on
rank 0 before building `MPIDataParallel` (or call its `broadcast()` afterwards).
"""
from __future__ import annotations

import logging
import os
import sys
import time

import numpy as np

from minicaffe import common
from minicaffe import log as glog
from minicaffe.common import MinicaffeError
from minicaffe.signals import SolverAction

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'minicaffe[mpi]'"

# What launchers tell their processes: MPICH's Hydra (and Slurm's PMI) set PMI_SIZE and
# PMI_RANK, Open MPI sets OMPI_COMM_WORLD_SIZE / _RANK.
LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")


def launched_size(environ=None) -> int:
    """How many processes an MPI launcher started with this one (1 without a launcher).

    Read from the environment, so a plain run never imports mpi4py.
    """
    environ = os.environ if environ is None else environ
    for name in LAUNCHER_SIZE_VARIABLES:
        value = environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return 1


def _launcher_variable(environ=None) -> str:
    environ = os.environ if environ is None else environ
    return next((f"{name}={environ[name]}" for name in LAUNCHER_SIZE_VARIABLES if name in environ), "")


def world():
    """MPI's COMM_WORLD, importing mpi4py now; without it, a MinicaffeError saying what to install."""
    try:
        from mpi4py import MPI
    except ImportError as err:
        started = launched_size()
        why = (f"this process is one of {started} started by an MPI launcher ({_launcher_variable()})"
               if started > 1 else "MPI training was asked for")
        raise MinicaffeError(f"{why}, but mpi4py cannot be imported ({err}); install it with "
                             f"{INSTALL_HINT}") from None
    return MPI.COMM_WORLD


def init(comm=None):
    """Make this process solver `comm.rank` of `comm.size` (all of MPI's COMM_WORLD by
    default) and quiet the logs of every rank but 0. Call it before building the solver.
    Returns the communicator."""
    comm = world() if comm is None else comm
    common.set_solver_count(comm.Get_size())
    common.set_solver_rank(comm.Get_rank())
    if not common.root_solver():  # Caffe's LOG_IF(INFO, Caffe::root_solver())
        minicaffe_logger = logging.getLogger(glog.LOGGER_NAME)
        minicaffe_logger.setLevel(max(minicaffe_logger.getEffectiveLevel(), logging.WARNING))
    return comm


def init_from_launcher():
    """`init()` when an MPI launcher started more than one process, else None (and no
    mpi4py import): what `minicaffe train` calls first."""
    return init() if launched_size() > 1 else None


def abort(code: int = 1) -> None:
    """End every rank now: the others may be waiting for this one in a collective."""
    # The launcher forwards our output through a pipe and stops reading once it kills the
    # ranks: flush, and give it a moment, so the error message reaches the terminal.
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(0.25)
    world().Abort(code)


class MPIDataParallel:
    """Make `solver` one of `comm.size` data-parallel solvers (Caffe's NCCL class).

    Building it broadcasts rank 0's weights and solver state, then hooks `on_gradients_ready`
    into the solver, which from then on averages the gradients over the ranks before each
    update. It also makes the ranks agree on signals (SIGINT / SIGHUP): a stop or snapshot
    asked for on any rank happens on all of them after the same iteration, as none may
    leave the loop while the others wait for it in the next Allreduce.
    """

    def __init__(self, solver, comm=None):
        self.comm = world() if comm is None else comm
        from mpi4py import MPI  # imported by world() or for the caller's comm already
        self._mpi = MPI
        self.solver = solver
        self.size, self.rank = self.comm.Get_size(), self.comm.Get_rank()
        self._check_setup()
        self.params = list(solver.net.learnable_params)
        # Every gradient lives in one flat host buffer, as in Caffe's Params: each
        # parameter's host diff is a view into it, so one Allreduce per iteration sums them
        # all, with nothing copied in or out; two slots after the gradients carry the signal
        # requests (snapshot, stop) in the same message. Why (LeNet, 2 ranks, one machine,
        # docs/parallel.md): a call costs ~1 us and the 1.7 MB ~0.7 ms, so one call or eight
        # hardly differ here, but between machines every call pays a network round trip;
        # and a separate buffer filled by copies would add ~0.5 ms, more than that saves.
        self._offsets = np.cumsum([0, *(blob.diff_mem.size for blob in self.params)])
        self.buffer = np.zeros(int(self._offsets[-1]) + 2, dtype=np.float32)
        self._views = [self.buffer[start:end] for start, end in zip(self._offsets[:-1], self._offsets[1:])]
        for blob, view in zip(self.params, self._views):
            _adopt(blob, view)
        self.allreduce_seconds = 0.0  # summed over iterations, for timing
        self._agreed_action = SolverAction.NONE
        self._local_requested_action = solver.requested_action
        solver.requested_action = self.requested_action
        solver.add_callback(self.on_start, self.on_gradients_ready)
        self.broadcast()
        logger.info("Data-parallel training on %d ranks: %d learnable values averaged per "
                    "iteration, rank 0's weights broadcast", self.size, self.buffer.size - 2)

    def _check_setup(self) -> None:
        if (common.solver_count(), common.solver_rank()) != (self.size, self.rank):
            raise MinicaffeError(
                f"rank {self.rank} of {self.size}: minicaffe's solver_count / solver_rank are "
                f"{common.solver_count()} / {common.solver_rank()}; call minicaffe.parallel.init() "
                "before building the solver, so each Data layer reads its own share of the items")
        sizes = self.comm.allgather(sum(blob.count for blob in self.solver.net.learnable_params))
        if len(set(sizes)) > 1:
            raise MinicaffeError(f"rank {self.rank} of {self.size}: the ranks' train nets differ "
                                 f"(learnable parameter counts by rank: {sizes}); every rank must "
                                 "build the same solver")

    def broadcast(self) -> None:
        """Copy rank 0's weights, iteration, learning-rate step and history to every rank."""
        solver = self.solver
        iteration, current_step = self.comm.bcast((solver.iter, solver.current_step), root=0)
        for blob in [*self.params, *getattr(solver, "history", [])]:
            self.comm.Bcast(blob.mutable_cpu_data(), root=0)
        if iteration != solver.iter:  # a resumed root: read on from where it stands
            solver.iter, solver.current_step = iteration, current_step
            for layer in solver.net.data_layers():
                layer.set_batch_index(solver.iter * solver.param.iter_size)

    def on_start(self) -> None:
        """Nothing to do as an iteration starts: the weights are equal already."""

    def on_gradients_ready(self) -> None:
        """Average the gradients over the ranks, in place (and agree on signal requests)."""
        started = time.perf_counter()
        buffer = self.buffer
        # OpenCL engine: mutable_cpu_diff() copies each diff from the device into its view
        # of the buffer and marks the host copy newest, so the update sends it back. Going
        # through host memory is simple and correct whatever the device: MPI never sees
        # device memory.
        for blob, view in zip(self.params, self._views):
            if blob.mutable_cpu_diff().base is not buffer:  # re-allocated by a reshape: adopt again
                _adopt(blob, view)
        local = self._local_requested_action()
        buffer[-2] = local == SolverAction.SNAPSHOT
        buffer[-1] = local == SolverAction.STOP
        self.comm.Allreduce(self._mpi.IN_PLACE, buffer, op=self._mpi.SUM)
        buffer[:-2] *= np.float32(1.0 / self.size)
        self._agreed_action = (SolverAction.STOP if buffer[-1] else
                               SolverAction.SNAPSHOT if buffer[-2] else SolverAction.NONE)
        self.allreduce_seconds += time.perf_counter() - started

    def requested_action(self) -> str:
        """What all ranks agreed on in this iteration's Allreduce (once; then NONE)."""
        action, self._agreed_action = self._agreed_action, SolverAction.NONE
        return action


def _adopt(blob, view: np.ndarray) -> None:
    """Make `view` (a slice of the flat buffer) the host memory of `blob`'s diff, values kept."""
    view[...] = blob.cpu_diff().ravel()
    blob.diff_mem.set_cpu_data(view)
