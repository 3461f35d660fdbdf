"""`minicaffe plot`: loss and accuracy curves from a training log (Caffe's `tools/extra/plot_training_log.py`).

    minicaffe train --solver lenet_solver.prototxt 2> lenet.log
    minicaffe plot lenet.log lenet.png [--what loss,accuracy,lr]

The log is read by its glog message lines, which minicaffe writes exactly as Caffe
does, so a log of Caffe itself works too:

    ... solver.cpp:228] Iteration 100 (7.2 iter/s, 13.8s/100 iters), loss = 0.31     train loss
    ... solver.cpp:244]     Train net output #0: loss = 0.31 (* 1 = 0.31 loss)
    ... sgd_solver.cpp:106] Iteration 100, lr = 0.0099                                learning rate
    ... solver.cpp:330] Iteration 500, Testing net (#0)                                a test starts
    ... solver.cpp:397]     Test net output #0: accuracy = 0.98                        its outputs
    ... solver.cpp:397]     Test net output #1: loss = 0.05 (* 1 = 0.05 loss)

One panel per item of `--what`: `loss` (the smoothed train loss and every test output
whose name contains "loss"), `accuracy` (test outputs whose name contains "accuracy"),
`lr` (the learning rate), each against the iteration.
"""
from __future__ import annotations

import re
from pathlib import Path

from minicaffe.common import MinicaffeError
from minicaffe.tools import optional_import

_NUMBER = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf))"
TRAIN_LOSS = re.compile(r"\] Iteration (\d+) \(.*\), loss = " + _NUMBER)
LEARNING_RATE = re.compile(r"\] Iteration (\d+), lr = " + _NUMBER)
TESTING = re.compile(r"\] Iteration (\d+), Testing net \(#(\d+)\)")
TEST_OUTPUT = re.compile(r"\] \s*Test net output #(\d+): (\S+) = " + _NUMBER)
WHAT = ("loss", "accuracy", "lr")


def parse_log(path) -> dict:
    """The curves in a training log.

    Returns {"train_loss": [(iter, loss)], "lr": [(iter, lr)],
    "test": {(net, output name): [(iter, value)]}}.
    """
    train_loss, lr, test = [], [], {}
    test_iter, test_net = None, 0
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        raise MinicaffeError(f"{path}: no such log file") from None
    for line in lines:
        if m := TRAIN_LOSS.search(line):
            train_loss.append((int(m[1]), float(m[2])))
        elif m := LEARNING_RATE.search(line):
            lr.append((int(m[1]), float(m[2])))
        elif m := TESTING.search(line):
            test_iter, test_net = int(m[1]), int(m[2])
        elif (m := TEST_OUTPUT.search(line)) and test_iter is not None:
            test.setdefault((test_net, m[2]), []).append((test_iter, float(m[3])))
    if not train_loss and not test:
        raise MinicaffeError(f"{path}: found no training iterations (no 'Iteration N (...), loss = X' "
                             "or 'Test net output' lines); is this the log of `minicaffe train` "
                             "or `caffe train` (its stderr)?")
    return {"train_loss": train_loss, "lr": lr, "test": test}


def parse_what(flag: str) -> list[str]:
    what = [w.strip().lower() for w in flag.split(",") if w.strip()]
    bad = [w for w in what if w not in WHAT]
    if bad or not what:
        raise MinicaffeError(f"--what takes a comma-separated list of {', '.join(WHAT)}; got {flag!r}")
    return what


def plot_log(log, out, what=("loss", "accuracy")) -> Path:
    """Plot the curves of `log` into the picture `out` (png, svg or pdf, by extension)."""
    matplotlib = optional_import("matplotlib", "plot")
    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    curves = parse_log(log)
    what = parse_what(what) if isinstance(what, str) else list(what)
    fig, axes = plt.subplots(len(what), 1, figsize=(7, 3 * len(what)), sharex=True, squeeze=False)
    for ax, item in zip(axes[:, 0], what):
        series = []
        if item == "loss" and curves["train_loss"]:
            series.append(("train loss", curves["train_loss"], "-"))
        if item == "lr":
            series.append(("learning rate", curves["lr"], "-"))
        for (net, name), points in sorted(curves["test"].items()):
            if item in ("loss", "accuracy") and item in name.lower():
                series.append((f"test #{net} {name}", points, "o-"))
        if not series:
            ax.text(0.5, 0.5, f"no {item} lines in this log", ha="center", va="center",
                    transform=ax.transAxes)
        for label, points, style in series:
            xs, ys = zip(*points)
            ax.plot(xs, ys, style, label=label, markersize=4)
        ax.set_ylabel(item)
        ax.grid(True, alpha=0.3)
        if series:
            ax.legend(loc="best")
    axes[-1, 0].set_xlabel("iteration")
    fig.suptitle(Path(log).name)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def run(args) -> int:
    path = plot_log(args.log, args.out, parse_what(args.what))
    print(f"Plotted {args.log} to {path}")
    return 0


def register(verbs) -> None:
    """Add the `plot` verb to the `minicaffe` command's subparsers."""
    p = verbs.add_parser("plot", help="plot loss and accuracy from a training log (plot_training_log.py)")
    p.add_argument("log", help="a training log (the stderr of `minicaffe train` or `caffe train`)")
    p.add_argument("out", help="the picture to write (.png, .svg, .pdf)")
    p.add_argument("--what", "-what", default="loss,accuracy",
                   help="the panels, comma-separated, from loss, accuracy, lr (default: loss,accuracy)")
    p.set_defaults(func=run)
