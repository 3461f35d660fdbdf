"""Measure the forward time of every model-zoo net at batch 1 on the numpy engine, for the
docs' model-zoo page.

    python benchmarks/zoo_table.py [--nets lenet,resnet50] [--out docs/model_zoo_timings.json]

Each net of `minicaffe.testing.zoo.ZOO` is built in the TEST phase at batch 1 on the
numpy engine, its parameters drawn (`draw_weights`: the definitions come without
weights, and the time does not depend on the values as long as they stay normal
floats) and its input drawn uniform in [-1, 1], and one untimed forward allocates
every buffer. Then the nets take turns, `--rounds` times: in each round every net's
`net.forward()` is timed again and again, at least `--min-repeats` times and for at
least its share of `--min-seconds`. Taking turns spreads each net's runs over the whole
measurement; and a block of runs during which other processes kept more than
`--max-others` cores busy (read from /proc/stat, less this process's own CPU time) is
thrown away and run again after a pause. The file records the least time (the run least
disturbed) and the median, the rounds that stayed noisy after `--retries`, the machine,
the library versions and the date.

BLAS runs with its default number of threads, as a user's script would. This takes a
few minutes (every net is held in memory at once: about 2 GB); the docs build only
reads the file it writes, and computes the parameters, multiply-adds and memory from
the definitions itself.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minicaffe import common  # noqa: E402
from minicaffe.net import TEST, Net  # noqa: E402
from minicaffe.testing.zoo import CAFFE_MODELS, ZOO, draw_weights, zoo_net  # noqa: E402

DEFAULT_OUT = ROOT / "docs" / "model_zoo_timings.json"


def machine() -> dict:
    """What the numbers were measured on: CPU, cores, and the software doing the work."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{blas['name']} {blas.get('version', '')}".strip()
    except Exception:  # older numpy has no dict form; the version line is enough then
        blas = "unknown"
    threads = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
               if k in os.environ}
    return {"cpu": cpu, "cores": os.cpu_count(), "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "numpy": np.__version__, "blas": blas,
            "blas_threads": threads or "default"}


def time_forward(net: Net, min_repeats: int, min_seconds: float) -> list[float]:
    """Milliseconds of each timed `net.forward()`: at least `min_repeats` of them, and
    for at least `min_seconds`."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        net.forward()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def build(entry) -> Net:
    """The net at batch 1 on the numpy engine, with drawn weights and input, run once."""
    net = Net(zoo_net(entry), TEST)
    rng = np.random.default_rng(0)
    draw_weights(net, rng)
    for name in net.inputs:
        net.blobs[name].data[...] = rng.uniform(-1, 1, net.blobs[name].shape)
    net.forward()  # allocates every buffer: not timed
    return net


def busy_seconds() -> float | None:
    """CPU seconds the whole machine has been busy since boot (None off Linux)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    t = os.times()
    return t.user + t.system


def others_load(seconds: float = 1.0) -> float | None:
    """Cores other processes keep busy, sampled over `seconds` while this one sleeps."""
    busy0, own0, wall0 = busy_seconds(), own_seconds(), time.perf_counter()
    if busy0 is None:
        return None
    time.sleep(seconds)
    wall = time.perf_counter() - wall0
    return max(0.0, (busy_seconds() - busy0) - (own_seconds() - own0)) / wall


def quiet_runs(net: Net, min_repeats: int, seconds: float, max_others: float, retries: int):
    """Timed runs of `net` while the rest of the machine is quiet: a block of runs during
    which other processes kept more than `max_others` cores busy is thrown away and run
    again, up to `retries` times. (Under load a multi-threaded BLAS call waits for its
    descheduled threads, and a forward can take ten times as long.) Returns the runs, the
    cores the others used during them, and whether they were quiet."""
    for attempt in range(retries + 1):
        # Wait (up to five minutes) for a quiet machine, so as not to start a block under load.
        for _ in range(60):
            load = others_load()
            if load is None or load <= max_others:
                break
            time.sleep(4)
        busy0, own0, wall0 = busy_seconds(), own_seconds(), time.perf_counter()
        runs = time_forward(net, min_repeats, seconds)
        if busy0 is None:  # not Linux: nothing to check against
            return runs, None, True
        wall = time.perf_counter() - wall0
        others = max(0.0, (busy_seconds() - busy0) - (own_seconds() - own0)) / wall
        if others <= max_others or attempt == retries:
            return runs, others, others <= max_others
        print(f"    other processes kept {others:.2f} cores busy: again", flush=True)


def measure(keys, rounds: int, min_repeats: int, min_seconds: float, max_others: float,
            retries: int) -> dict:
    """Time each net in `rounds` rounds, the nets taking turns, so that a spell of load
    from elsewhere on the machine spoils one round of a net, not all of its runs."""
    entries = [e for e in ZOO if e.key in keys]
    times: dict[str, list[float]] = {e.key: [] for e in entries}
    noisy: dict[str, int] = {e.key: 0 for e in entries}
    with common.using_mode(common.CPU):
        nets = {e.key: build(e) for e in entries}
        for r in range(rounds):
            for entry in entries:
                runs, others, quiet = quiet_runs(nets[entry.key], min_repeats, min_seconds / rounds,
                                                 max_others, retries)
                times[entry.key] += runs
                noisy[entry.key] += not quiet
                load = "" if others is None else f"   others: {others:.2f} cores"
                print(f"round {r + 1}: {entry.title:20} min {min(runs):9.2f} ms   "
                      f"median {statistics.median(runs):9.2f} ms   ({len(runs)} runs){load}", flush=True)
    return {e.key: {"forward_ms_min": round(min(times[e.key]), 3),
                    "forward_ms_median": round(statistics.median(times[e.key]), 3),
                    "runs": len(times[e.key]), "noisy_rounds": noisy[e.key],
                    "input_shapes": {n: list(nets[e.key].blobs[n].shape) for n in nets[e.key].inputs}}
            for e in entries}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default=",".join(e.key for e in ZOO),
                        help="comma-separated keys of minicaffe.testing.zoo.ZOO (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON file to write")
    parser.add_argument("--rounds", type=int, default=3, help="turns each net gets (default: 3)")
    parser.add_argument("--min-repeats", type=int, default=3, help="runs of a net in each round (at least)")
    parser.add_argument("--min-seconds", type=float, default=6.0,
                        help="seconds of runs of each net, over all rounds (at least)")
    parser.add_argument("--max-others", type=float, default=0.2,
                        help="cores other processes may keep busy during a block of runs (default: 0.2)")
    parser.add_argument("--retries", type=int, default=20,
                        help="times a disturbed block is run again before it is kept anyway")
    args = parser.parse_args(argv)
    keys = args.nets.split(",")
    unknown = set(keys) - {e.key for e in ZOO}
    if unknown:
        parser.error(f"unknown nets {sorted(unknown)}; known: {', '.join(e.key for e in ZOO)}")
    if not CAFFE_MODELS.is_dir():
        parser.error(f"Caffe's model definitions are not at {CAFFE_MODELS}")
    logging.getLogger("minicaffe").setLevel(logging.WARNING)
    record = {"what": "numpy engine, TEST phase, batch 1: milliseconds per net.forward()",
              "command": " ".join(["python benchmarks/zoo_table.py", *(sys.argv[1:] if argv is None else argv)]),
              "date": datetime.date.today().isoformat(), "machine": machine(),
              "rounds": args.rounds, "min_repeats": args.min_repeats, "min_seconds": args.min_seconds,
              "max_others": args.max_others,
              "nets": measure(keys, args.rounds, args.min_repeats, args.min_seconds, args.max_others,
                              args.retries)}
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
