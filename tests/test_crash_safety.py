r"""Crash safety and Caffe's signal effects, end to end on `minicaffe train` processes.

A tiny two-layer net trains on real MNIST digits (an LMDB built from the shipped IDX
files) with the numpy engine, a fixed seed and a snapshot every 2 iterations.

* **SIGKILL.** A crash loop kills `minicaffe train` at random moments, most of them
  just after a snapshot file (or its temporary file) appears, then resumes from the
  newest complete snapshot, again and again. After every kill each file under a real
  snapshot name must be byte-identical to the file of that name that an uninterrupted
  run wrote (so none is truncated, and every resume reproduced the straight run up to
  there); the only other files allowed are the hidden temporary files of a write that
  was cut short. The last resume runs to `max_iter`, and its weights must be exactly
  the uninterrupted run's. Bit-for-bit is the right bar: the numpy engine is
  deterministic, the data layer is rewound on resume and the net has no random layers.
* **SIGINT / SIGHUP.** `--sigint_effect` / `--sighup_effect` (stop, snapshot, none)
  behave as in Caffe (`tools/caffe.cpp`, `solver.cpp`): *stop* finishes the current
  iteration, writes the final snapshot and logs "Optimization stopped early.";
  *snapshot* writes one and carries on; *none* ignores the signal. During testing a
  stop interrupts the test ("Test interrupted."), a snapshot is written at once and
  the test goes on. As in Caffe the handler is in place before the solver is built, so
  a signal during setup is acted on after the first iteration.
"""
from __future__ import annotations

import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from minicaffe import protoio
from minicaffe.io.mnist import convert_mnist_data
from minicaffe.proto import caffe_pb2

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "mnist"
MAX_ITER = 60  # the crash loop's run: 30 snapshots, about 0.2 s of training

NET = """
name: "tiny"
layer {{ name: "mnist" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }}
  transform_param {{ scale: 0.00390625 }}
  data_param {{ source: "{train}" batch_size: 16 backend: LMDB }} }}
layer {{ name: "mnist" type: "Data" top: "data" top: "label" include {{ phase: TEST }}
  transform_param {{ scale: 0.00390625 }}
  data_param {{ source: "{test}" batch_size: 16 backend: LMDB }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param {{ num_output: 32 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param {{ num_output: 10 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
"""

# Momentum and a step policy, so a resume must restore the history and the rate.
SOLVER = """net: "{net}"
base_lr: 0.05 momentum: 0.9 weight_decay: 0.0005 lr_policy: "step" gamma: 0.7 stepsize: 7
display: 1 max_iter: {max_iter} snapshot: {snapshot} snapshot_prefix: "{folder}/tiny"
solver_mode: CPU random_seed: 7
{extra}
"""

SNAPSHOT = re.compile(r"tiny_iter_(\d+)\.(caffemodel|solverstate)")
# A write cut short leaves its hidden temporary file (protoio.write_atomic), and a kill
# inside the solver's write-permission probe leaves the probe.
LEFTOVER = re.compile(r"\.tiny_iter_\d+\.(caffemodel|solverstate)\.[^.]+\.tmp|tiny_iter_0\.tempfile")


# ---------------------------------------------------------------- setup

@pytest.fixture(scope="module")
def net(tmp_path_factory) -> Path:
    """The tiny net's prototxt, reading 512 training and 64 test digits."""
    folder = tmp_path_factory.mktemp("digits")
    train, test = folder / "train_lmdb", folder / "test_lmdb"
    convert_mnist_data(DATA / "train-10k-images-idx3-ubyte.gz", DATA / "train-10k-labels-idx1-ubyte.gz",
                       train, limit=512, progress=False)
    convert_mnist_data(DATA / "t10k-images-idx3-ubyte.gz", DATA / "t10k-labels-idx1-ubyte.gz",
                       test, limit=64, progress=False)
    path = folder / "net.prototxt"
    path.write_text(NET.format(train=train, test=test))
    return path


def write_solver(folder: Path, net: Path, max_iter: int = MAX_ITER, snapshot: int = 2, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "solver.prototxt"
    path.write_text(SOLVER.format(net=net, folder=folder, max_iter=max_iter, snapshot=snapshot, extra=extra))
    return path


def start_train(solver: Path, *flags: str, log=subprocess.DEVNULL) -> subprocess.Popen:
    """`python -m minicaffe train --solver SOLVER FLAGS...` on this checkout's minicaffe."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "minicaffe", "train", "--solver", str(solver), *flags],
                            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=log)


@pytest.fixture(scope="module")
def reference(net, tmp_path_factory) -> dict[str, bytes]:
    """Every snapshot file of an uninterrupted run, by name (solverstates normalised)."""
    folder = tmp_path_factory.mktemp("reference")
    proc = start_train(write_solver(folder, net), log=subprocess.PIPE)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-3000:]
    files = {path.name: normalised(path) for path in folder.iterdir() if SNAPSHOT.fullmatch(path.name)}
    assert len(files) == MAX_ITER  # 2 files every 2 iterations
    for name in files:  # each loads, with every weight in it
        if name.endswith(".caffemodel"):
            model = protoio.read_net_param(folder / name)
            assert [len(blob.data) for layer in model.layer for blob in layer.blobs] == [32 * 784, 32, 10 * 32, 10]
    return files


def normalised(path: Path) -> bytes:
    """The file's bytes; for a solverstate, without the learned_net path (it names the folder)."""
    if path.suffix != ".solverstate":
        return path.read_bytes()
    state = protoio.read_binary(path, caffe_pb2.SolverState())
    assert state.learned_net == str(path.with_suffix(".caffemodel"))
    state.ClearField("learned_net")
    return state.SerializeToString()


# ---------------------------------------------------------------- SIGKILL

def check_snapshots(folder: Path, reference: dict[str, bytes]) -> tuple[Path | None, list[str]]:
    """Check every file in `folder`; return the newest complete snapshot and the leftovers.

    A file under a snapshot name must equal the uninterrupted run's (whole, and the
    same weights); anything else must be a leftover of a cut-short write.
    """
    states, leftovers = [], []
    for path in folder.iterdir():
        match = SNAPSHOT.fullmatch(path.name)
        if match:
            assert normalised(path) == reference[path.name], f"{path.name} differs from the straight run's"
            if match[2] == "solverstate":
                states.append((int(match[1]), path))
        elif path.name != "solver.prototxt":
            assert LEFTOVER.fullmatch(path.name), f"unexpected file {path.name}"
            leftovers.append(path.name)
    if not states:
        return None, leftovers
    newest = max(states)[1]
    # The weights are written before the state that names them.
    assert newest.with_suffix(".caffemodel").exists()
    return newest, leftovers


def snapshot_files(folder: Path) -> set[str]:
    """The names of the snapshots in `folder` and of their temporary files."""
    return {name for name in os.listdir(folder) if ".caffemodel" in name or ".solverstate" in name}


def kill_at_a_random_moment(proc: subprocess.Popen, folder: Path, rng: random.Random) -> str | None:
    """SIGKILL `proc` at a moment drawn from `rng`; None when it finished first.

    A third of the kills strike as soon as a snapshot's temporary file is seen, so
    inside a write (if the rename has not won the race). A third wait until 1-6 files
    that were not in `folder` have appeared (temporary files, or snapshots renamed
    into place) and strike 0-3 ms after the last: inside a write, between the weights
    and the state, or just after. The rest strike at any moment of the run, start-up
    and restore included.
    """
    draw = rng.random()
    if draw < 1 / 3:
        deadline = time.monotonic() + 60
        while not any(LEFTOVER.fullmatch(name) for name in os.listdir(folder)):
            if proc.poll() is not None:
                return None
            assert time.monotonic() < deadline, "no snapshot was written within a minute"
        when = "inside a write"
    elif draw < 2 / 3:
        before = snapshot_files(folder)
        files, delay = rng.randint(1, 6), rng.uniform(0, 0.003)
        deadline = time.monotonic() + 60
        while len(snapshot_files(folder) - before) < files:
            if proc.poll() is not None:
                return None
            assert time.monotonic() < deadline, "no snapshot appeared within a minute"
            time.sleep(0.0001)
        time.sleep(delay)
        when = "at a snapshot"
    else:
        try:
            proc.wait(timeout=rng.uniform(0, 0.4))
            return None
        except subprocess.TimeoutExpired:
            when = "at random"
    proc.kill()
    proc.wait()
    return when if proc.returncode == -signal.SIGKILL else None


def crash_loop(net: Path, reference: dict[str, bytes], root: Path, kills_wanted: int, cut_short_wanted: int,
               seed: int) -> dict:
    """Kill and resume until enough kills are done and a run has reached max_iter.

    Enough means `kills_wanted` kills, of which `cut_short_wanted` struck inside a
    snapshot (a write cut short, or weights without their state). Whether a kill wins
    the race against a write of a few hundred microseconds depends on the machine's
    load, so the loop goes on killing, up to 5 times `kills_wanted`, until that many
    have; the caller checks the counts. Each run resumes from the newest complete
    snapshot its predecessor left (or starts afresh if there is none). A run that
    finishes before its kill ends its chain, which is checked like the rest; the next
    chain starts from scratch in a fresh folder. Returns counts: kills, chains,
    resumes, and what the kills left behind.
    """
    rng = random.Random(seed)
    stats = dict.fromkeys(["kills", "chains", "resumes", "inside a write", "at a snapshot", "at random",
                           "cut a write short", "weights without state"], 0)

    def more_kills() -> bool:
        cut_short = stats["cut a write short"] + stats["weights without state"]
        return stats["kills"] < kills_wanted or (cut_short < cut_short_wanted and stats["kills"] < 5 * kills_wanted)

    log_path = root / "train.log"
    while more_kills():
        stats["chains"] += 1
        folder = root / f"chain{stats['chains']}"
        solver = write_solver(folder, net)
        resume_from = None
        while True:
            before = set(os.listdir(folder))
            stats["resumes"] += resume_from is not None
            with open(log_path, "wb") as log:
                proc = start_train(solver, *(["--snapshot", str(resume_from)] if resume_from else []), log=log)
                try:
                    killed = kill_at_a_random_moment(proc, folder, rng) if more_kills() else None
                    if not killed:
                        proc.wait(timeout=120)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
            newest, leftovers = check_snapshots(folder, reference)
            if resume_from is not None:
                # It went on from the snapshot (a fresh start would write the same files).
                started = re.search(r"\] Iteration (\d+), lr = ", log_path.read_text())
                assert started is None or int(started[1]) == int(SNAPSHOT.fullmatch(resume_from.name)[1])
            if not killed:
                assert proc.returncode == 0, log_path.read_text()[-3000:]
                # check_snapshots compared every file with the straight run's; be explicit.
                final = f"tiny_iter_{MAX_ITER}.caffemodel"
                assert (folder / final).read_bytes() == reference[final]
                break
            stats["kills"] += 1
            stats[killed] += 1
            names = set(os.listdir(folder))
            if (names - before) & set(leftovers):
                stats["cut a write short"] += 1
            elif any(name.endswith(".caffemodel") and name.replace(".caffemodel", ".solverstate") not in names
                     for name in names - before):
                stats["weights without state"] += 1
            resume_from = newest
    return stats


def test_sigkill_around_snapshots_then_resume_matches_the_straight_run(net, reference, tmp_path):
    """24 kills or more (about 10 s); every snapshot left is whole and resuming reproduces the straight run."""
    stats = crash_loop(net, reference, tmp_path, kills_wanted=24, cut_short_wanted=3, seed=2024)
    print(stats)
    assert stats["kills"] >= 24 and stats["resumes"] >= 12, stats
    # Some kills must have struck inside a snapshot, or the test proves little.
    assert stats["cut a write short"] + stats["weights without state"] >= 3, stats


@pytest.mark.slow
def test_sigkill_two_hundred_times(net, reference, tmp_path):
    stats = crash_loop(net, reference, tmp_path, kills_wanted=200, cut_short_wanted=25, seed=7)
    print(stats)
    assert stats["kills"] >= 200 and stats["resumes"] >= 100, stats
    assert stats["cut a write short"] + stats["weights without state"] >= 25, stats


# ---------------------------------------------------------------- SIGINT / SIGHUP

class Training:
    """A `minicaffe train` process whose log lines are read as they come."""

    def __init__(self, solver: Path, *flags: str):
        self.proc = start_train(solver, *flags, log=subprocess.PIPE)
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self.proc.stderr:
            self._queue.put(raw.decode(errors="replace").rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match:
        """Block until a log line matches `pattern`; fail if the process ends first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no log line matched {pattern!r} within {timeout} s:\n" + self.log[-3000:])
            if line is None:
                self._queue.put(None)
                pytest.fail(f"training ended before a log line matched {pattern!r}:\n" + self.log[-3000:])
            self.lines.append(line)
            match = regex.search(line)
            if match:
                return match

    def finish(self, timeout: float = 60) -> int:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        while (line := self._queue.get(timeout=10)) is not None:
            self.lines.append(line)
        return self.proc.returncode

    @property
    def log(self) -> str:
        return "\n".join(self.lines)


def snapshot_iters(folder: Path) -> list[int]:
    """The iterations with a complete snapshot, checking that each loads."""
    iters = sorted(int(m[1]) for p in folder.iterdir() if (m := SNAPSHOT.fullmatch(p.name)) and m[2] == "solverstate")
    for n in iters:
        state = protoio.read_binary(folder / f"tiny_iter_{n}.solverstate", caffe_pb2.SolverState())
        assert state.iter == n
        protoio.read_net_param(folder / f"tiny_iter_{n}.caffemodel")
    return iters


@pytest.fixture
def start(net, tmp_path):
    """start(max_iter=.., snapshot=.., extra=.., flags=[..]): a Training in tmp_path, killed if left running."""
    started = []

    def launch(*, flags=(), **solver_fields) -> Training:
        started.append(Training(write_solver(tmp_path, net, **solver_fields), *flags))
        return started[-1]

    yield launch
    for training in started:
        if training.proc.poll() is None:
            training.proc.kill()
            training.proc.wait()


SIGNALS = {"SIGINT": signal.SIGINT, "SIGHUP": signal.SIGHUP}


def effect_flags(sig: str, effect: str | None) -> list[str]:
    return [] if effect is None else [f"--{sig.lower()}_effect", effect]


@pytest.mark.parametrize("sig, effect", [("SIGINT", None), ("SIGHUP", "stop")])
def test_stop_finishes_the_iteration_snapshots_and_exits(start, tmp_path, sig, effect):
    """SIGINT's default, stop: Caffe completes the iteration under way, then Solve writes
    the final snapshot (snapshot_after_train) and logs "Optimization stopped early."."""
    training = start(max_iter=100_000, snapshot=0, flags=effect_flags(sig, effect))
    training.wait_for(r"\] Iteration 3, lr = ")
    training.proc.send_signal(SIGNALS[sig])
    assert training.finish() == 0, training.log[-3000:]
    [stopped_at] = snapshot_iters(tmp_path)
    last_started = max(int(m[1]) for line in training.lines if (m := re.search(r"\] Iteration (\d+), lr = ", line)))
    assert stopped_at == last_started + 1 and 4 <= stopped_at < 100_000
    assert "Optimization stopped early." in training.log


def test_stop_without_snapshot_after_train_writes_nothing(start, tmp_path):
    """Solve's final snapshot is snapshot_after_train's: without it a stop saves nothing."""
    training = start(max_iter=100_000, snapshot=0, extra="snapshot_after_train: false")
    training.wait_for(r"\] Iteration 3, lr = ")
    training.proc.send_signal(signal.SIGINT)
    assert training.finish() == 0, training.log[-3000:]
    assert snapshot_iters(tmp_path) == [] and "Optimization stopped early." in training.log


@pytest.mark.parametrize("sig, effect", [("SIGHUP", None), ("SIGINT", "snapshot")])
def test_snapshot_writes_one_and_training_goes_on(start, tmp_path, sig, effect):
    """SIGHUP's default, snapshot: a snapshot of the current iteration, then on to max_iter."""
    training = start(max_iter=400, snapshot=0, flags=effect_flags(sig, effect))
    training.wait_for(r"\] Iteration 3, lr = ")
    training.proc.send_signal(SIGNALS[sig])
    saved = int(training.wait_for(r"Snapshotting to binary proto file .*tiny_iter_(\d+)\.caffemodel")[1])
    training.wait_for(rf"\] Iteration {saved + 10}, lr = ")  # it goes on
    training.proc.send_signal(SIGNALS[sig])  # and a second signal is honoured too
    assert training.finish() == 0, training.log[-3000:]
    iters = snapshot_iters(tmp_path)
    assert len(iters) == 3 and 4 <= iters[0] == saved and saved + 10 < iters[1] < 400 == iters[2]
    assert "Optimization Done." in training.log and "stopped early" not in training.log


@pytest.mark.parametrize("sig", ["SIGINT", "SIGHUP"])
def test_none_ignores_the_signal(start, tmp_path, sig):
    training = start(max_iter=400, snapshot=0, flags=effect_flags(sig, "none"))
    for n in (3, 10, 20):
        training.wait_for(rf"\] Iteration {n}, lr = ")
        training.proc.send_signal(SIGNALS[sig])
    assert training.finish() == 0, training.log[-3000:]
    assert snapshot_iters(tmp_path) == [400]  # only snapshot_after_train's
    assert "Optimization Done." in training.log and "stopped early" not in training.log


def test_sighup_snapshots_and_sigint_stops_with_both_flags_swapped(start, tmp_path):
    """The flags are independent: here SIGHUP stops and SIGINT snapshots."""
    training = start(max_iter=100_000, snapshot=0, flags=["--sigint_effect", "snapshot", "--sighup_effect", "stop"])
    training.wait_for(r"\] Iteration 3, lr = ")
    training.proc.send_signal(signal.SIGINT)
    training.wait_for(r"Snapshotting to binary proto file .*tiny_iter_\d+\.caffemodel")
    training.proc.send_signal(signal.SIGHUP)
    assert training.finish() == 0, training.log[-3000:]
    assert len(snapshot_iters(tmp_path)) == 2 and "Optimization stopped early." in training.log


# A long test phase at iteration 5 (test_iter batches of the 64 test digits, wrapping).
TESTING = "test_iter: {test_iter} test_interval: 5 test_initialization: false"


@pytest.mark.parametrize("sig, effect", [("SIGINT", None), ("SIGHUP", "stop")])
def test_stop_while_testing_interrupts_the_test(start, tmp_path, sig, effect):
    """Caffe's Test checks for signals before every test batch: stop ends the test
    ("Test interrupted."), no further iteration runs, and Solve snapshots iteration 5."""
    training = start(max_iter=1000, snapshot=0, extra=TESTING.format(test_iter=1_000_000),
                     flags=effect_flags(sig, effect))
    training.wait_for(r"\] Iteration 5, Testing net \(#0\)")
    training.proc.send_signal(SIGNALS[sig])
    assert training.finish() == 0, training.log[-3000:]
    assert snapshot_iters(tmp_path) == [5]
    assert "Test interrupted." in training.log and "Optimization stopped early." in training.log
    assert not any("Test net output" in line or "Iteration 5, lr" in line for line in training.lines)


@pytest.mark.parametrize("sig, effect", [("SIGHUP", None), ("SIGINT", "snapshot"), ("SIGINT", "none")])
def test_snapshot_or_none_while_testing_lets_the_test_finish(start, tmp_path, sig, effect):
    """snapshot: written at once, at the iteration under test, and the test goes on."""
    training = start(max_iter=6, snapshot=0, extra=TESTING.format(test_iter=2000), flags=effect_flags(sig, effect))
    training.wait_for(r"\] Iteration 5, Testing net \(#0\)")
    training.proc.send_signal(SIGNALS[sig])
    assert training.finish() == 0, training.log[-3000:]
    test_output = next(i for i, line in enumerate(training.lines) if "Test net output #0: loss" in line)
    if effect == "none":
        assert snapshot_iters(tmp_path) == [6]
    else:  # written during the test, at the iteration being tested
        assert snapshot_iters(tmp_path) == [5, 6]
        assert any("tiny_iter_5.caffemodel" in line for line in training.lines[:test_output])
    assert "Test interrupted." not in training.log and "Optimization Done." in training.log


@pytest.mark.parametrize("sig, expected", [("SIGINT", "stop"), ("SIGHUP", "snapshot")])
def test_a_signal_during_setup_acts_after_the_first_iteration(start, tmp_path, sig, expected):
    """caffe.cpp installs its handler before it builds the solver: a signal that comes
    while the nets are set up waits for the first iteration's check."""
    training = start(max_iter=100_000 if expected == "stop" else 400, snapshot=0)
    training.wait_for(r"Initializing solver from parameters")
    training.proc.send_signal(SIGNALS[sig])
    assert training.finish() == 0, training.log[-3000:]
    iters = snapshot_iters(tmp_path)
    if expected == "stop":
        assert len(iters) == 1 and 1 <= iters[0] < 100 and "Optimization stopped early." in training.log
    else:
        assert len(iters) == 2 and 1 <= iters[0] < 100 and iters[1] == 400
