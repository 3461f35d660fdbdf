"""Process-wide state, as in Caffe's `caffe/common.hpp`: the compute mode and the RNG.

Caffe keeps one `Caffe` singleton holding the mode (CPU or GPU), the device and the
random generator. minicaffe keeps the same three things as module state; everything
that draws random numbers (fillers, dropout, data shuffling, mirroring, cropping)
draws from `rng()`, so `set_random_seed(s)` makes a whole training run repeatable.

Two more numbers describe data-parallel training (`minicaffe.parallel`): how many
solvers train together (`solver_count`) and which one this process is (`solver_rank`,
0 is the root). Data layers read them to take their share of the items; only the root
solver logs, tests and snapshots. A plain run is one solver of rank 0.
"""
from __future__ import annotations

import contextlib
import difflib

import numpy as np

CPU, GPU = "cpu", "gpu"

_mode = CPU
_device_id = 0
_rng = np.random.default_rng()
_solver_count = 1
_solver_rank = 0


class MinicaffeError(Exception):
    """A user-facing error: bad input, named by file, line, layer or blob.

    The CLI prints these as one paragraph, without a traceback.
    """


def reworded(err: MinicaffeError, message: str) -> MinicaffeError:
    """`err` with more context in its message, and its own type kept (an error from a
    Python layer's code is also of the user's exception type, which scripts catch)."""
    err.args = (message,)
    return err


def mode() -> str:
    return _mode


def set_mode(new_mode: str) -> None:
    global _mode
    if new_mode not in (CPU, GPU):
        raise ValueError(f"mode must be {CPU!r} or {GPU!r}, got {new_mode!r}")
    _mode = new_mode


@contextlib.contextmanager
def using_mode(new_mode: str):
    """Run a block in another mode (tests run each layer once per mode)."""
    old = _mode
    set_mode(new_mode)
    try:
        yield
    finally:
        set_mode(old)


def device_id() -> int:
    return _device_id


def set_device(device: int) -> None:
    global _device_id
    _device_id = int(device)


def solver_count() -> int:
    """How many solvers train together, one per process (Caffe's Caffe::solver_count())."""
    return _solver_count


def set_solver_count(count: int) -> None:
    global _solver_count
    if int(count) < 1:
        raise ValueError(f"solver_count must be at least 1, got {count}")
    _solver_count = int(count)


def solver_rank() -> int:
    """This process's solver among `solver_count()`, from 0 (Caffe's Caffe::solver_rank())."""
    return _solver_rank


def set_solver_rank(rank: int) -> None:
    global _solver_rank
    if int(rank) < 0:
        raise ValueError(f"solver_rank must be at least 0, got {rank}")
    _solver_rank = int(rank)


def root_solver() -> bool:
    """True in the solver that logs, tests and snapshots (rank 0; Caffe's root_solver())."""
    return _solver_rank == 0


def rng() -> np.random.Generator:
    """The generator every random draw in minicaffe goes through."""
    return _rng


def set_random_seed(seed: int) -> None:
    global _rng
    _rng = np.random.default_rng(seed)


def rng_state() -> dict:
    return _rng.bit_generator.state


def set_rng_state(state: dict) -> None:
    _rng.bit_generator.state = state


def did_you_mean(name: str, known) -> str:
    """" Did you mean 'ReLU'?" for a misspelt type name (close matches and case slips), or ""."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    close += [k for k in known if k.lower() == name.lower() and k not in close]
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
