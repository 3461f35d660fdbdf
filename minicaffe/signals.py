"""SIGINT and SIGHUP as requests to the solver (Caffe's `util/signal_handler.cpp`).

A signal never interrupts an iteration: the handler only sets a flag, and the solver asks
`check_for_signals()` between iterations, when the weights are whole. `minicaffe train
--sigint_effect / --sighup_effect` choose what each signal asks for: stop, snapshot or none.
"""
from __future__ import annotations

import signal
import threading

from minicaffe.common import MinicaffeError


class SolverAction:
    """What a signal asks the solver to do (Caffe's SolverAction::Enum)."""
    NONE, STOP, SNAPSHOT = "none", "stop", "snapshot"
    ALL = (NONE, STOP, SNAPSHOT)


class SignalHandler:
    """Turn SIGINT / SIGHUP into solver actions, checked once per iteration (signal_handler.cpp).

    Caffe's defaults: SIGINT (Ctrl-C) stops after the current iteration (the solver then
    writes its final snapshot), SIGHUP snapshots and carries on. Use it as a context
    manager; the previous handlers come back on exit. Outside the main thread Python
    cannot install handlers, so there it does nothing.
    """

    def __init__(self, sigint_effect: str = SolverAction.STOP, sighup_effect: str = SolverAction.SNAPSHOT):
        for name, effect in (("sigint_effect", sigint_effect), ("sighup_effect", sighup_effect)):
            if effect not in SolverAction.ALL:
                raise MinicaffeError(f"invalid {name} {effect!r}: choose snapshot, stop or none")
        self.sigint_effect, self.sighup_effect = sigint_effect, sighup_effect
        self._got_sigint = self._got_sighup = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        # Only set a flag: the solver acts between iterations, when the weights are whole.
        if signum == signal.SIGINT:
            self._got_sigint = True
        else:
            self._got_sighup = True

    def __enter__(self) -> "SignalHandler":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, getattr(signal, "SIGHUP", None)):
                if sig is not None:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def check_for_signals(self) -> str:
        if self._got_sighup:
            self._got_sighup = False
            return self.sighup_effect
        if self._got_sigint:
            self._got_sigint = False
            return self.sigint_effect
        return SolverAction.NONE
