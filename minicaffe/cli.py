"""The `minicaffe` command: Caffe's `caffe` tool (`tools/caffe.cpp`) and its helpers.

    minicaffe train --solver lenet_solver.prototxt [--snapshot S.solverstate | --weights W[,W2]] [--gpu 0]
                    [--prune-mask P.mask.h5]
    minicaffe test  --model lenet_train_test.prototxt --weights W.caffemodel --iterations 100 [--gpu 0]
    minicaffe test  --quantized Q.h5 --model lenet_train_test.prototxt [--weights W] --iterations 100
    minicaffe quantize --model M --weights W --calibration-batches 10 --output Q.h5
    minicaffe time  --model lenet_train_test.prototxt [--iterations 50] [--gpu 0] [--phase TRAIN]
    minicaffe device_query [--gpu 0]
    minicaffe convert_mnist_data IMAGES LABELS DB [--backend lmdb]
    minicaffe convert_imageset [--gray] [--shuffle] [--resize_height H --resize_width W] ROOT/ LIST DB
    minicaffe compute_image_mean DB [MEAN.binaryproto]
    minicaffe extract_features W.caffemodel MODEL BLOB[,BLOB] DB[,DB] NUM_BATCHES lmdb [CPU|GPU] [ID]
    minicaffe data mnist [--dest data/mnist]
    minicaffe upgrade_net_proto_text OLD.prototxt NEW.prototxt
    minicaffe upgrade_net_proto_binary OLD.caffemodel NEW.caffemodel
    minicaffe upgrade_solver_proto_text OLD_solver.prototxt NEW_solver.prototxt
    minicaffe prune --model M --weights W --sparsity 0.9 --output P.caffemodel [--mask P.mask.h5]
    minicaffe export_onnx --model deploy.prototxt --weights W.caffemodel --output M.onnx

Flags take Caffe's single dash too (`-solver x`, `-gpu=0`), so Caffe's shell scripts
(`caffe train -solver examples/mnist/lenet_solver.prototxt`) work with the name changed.
Paths inside a solver file are relative to the current directory, as in Caffe.

Engines: `--gpu N` runs the OpenCL engine on device N and is an error when no OpenCL
device works (you asked for it). Without `--gpu`, a solver file's `solver_mode: GPU`
(Caffe's examples set it) uses the device when one works, and otherwise warns in one
line and trains on numpy.

Many processes: `mpiexec -n N minicaffe train ...` trains N data-parallel solvers (see
`minicaffe.parallel`); `--gpu 0,1` then gives rank r the r-th device id (modulo the list).
An error on any rank prints `minicaffe: error: rank R of N: ...` and stops every rank.

Signals, as in Caffe: SIGINT (Ctrl-C) stops training after the current iteration (the
final snapshot is written if snapshot_after_train, the default), SIGHUP writes a
snapshot and carries on; `--sigint_effect` / `--sighup_effect` choose stop, snapshot
or none for each.

Logs go to stderr in glog's format. A user error (a missing file, a typo in a prototxt,
a bad flag combination) prints one paragraph, `minicaffe: error: ...`, and exits 1.
"""
from __future__ import annotations

import argparse
import logging
import sys
import traceback

import numpy as np

from minicaffe import log as glog  # noqa: F401  (installs the glog handler)
from minicaffe import common
from minicaffe.common import MinicaffeError
from minicaffe.tools import one_device, parse_gpus, parse_stages, select_engine

logger = logging.getLogger("minicaffe.caffe")
PROG = "minicaffe"


# ---------------------------------------------------------------- verbs

def train(args) -> int:
    from minicaffe import parallel
    from minicaffe.engine import select_mode
    from minicaffe.proto import caffe_pb2
    from minicaffe.signals import SignalHandler
    from minicaffe.solver import read_solver_file
    from minicaffe.solvers import get_solver

    if not args.solver:
        raise MinicaffeError("Need a solver definition to train: give --solver FILE.")
    if args.snapshot and args.weights:
        raise MinicaffeError("Give a snapshot to resume training or weights to finetune but not both "
                             f"(got --snapshot {args.snapshot} and --weights {args.weights}).")
    # Under `mpiexec -n N` (N > 1) this process becomes solver `rank` of N; first of all,
    # so that only rank 0 logs from here on.
    comm = parallel.init_from_launcher()
    param = read_solver_file(args.solver)
    param.train_state.level = args.level
    param.train_state.stage.extend(parse_stages(args.stage))

    # Without --gpu, the solver file decides (solver_mode, device_id), as in Caffe.
    gpus = parse_gpus(args.gpu)
    asked_for_gpu = bool(gpus)
    if not gpus and param.solver_mode == caffe_pb2.SolverParameter.GPU:
        gpus = [param.device_id]
    if comm is not None and gpus:
        # As Caffe's --gpu 0,1: one device per solver; here rank r takes the r-th id,
        # and ranks share devices when there are more ranks than ids.
        logger.info("Using GPUs %s", ", ".join(map(str, gpus)))
        gpus = [gpus[common.solver_rank() % len(gpus)]]
    elif gpus:
        gpus = one_device(gpus)
        logger.info("Using GPUs %s", ", ".join(map(str, gpus)))
    if gpus:
        param.solver_mode = caffe_pb2.SolverParameter.GPU
        param.device_id = gpus[0]
    else:
        logger.info("Use CPU.")
        param.solver_mode = caffe_pb2.SolverParameter.CPU

    # The solver loads its `weights` field; the flags replace it, as in Caffe: resuming
    # takes the weights from the snapshot, and --weights overrides the file's list.
    if args.snapshot or args.weights:
        param.ClearField("weights")
    if args.weights:
        param.weights.append(args.weights)
    if not common.root_solver():
        # Rank 0 reads the weights (and any snapshot) and broadcasts them: the files
        # need to be on its machine only.
        param.ClearField("weights")
    # A minicaffe extension: fine-tune a pruned net, its pruned weights held at zero
    # (minicaffe.pruning). The file is read before the nets are built, to fail fast.
    masks = None
    if args.prune_mask:
        from minicaffe import pruning
        masks = pruning.load_masks(args.prune_mask)
    # An explicit --gpu without a working device is an error; solver_mode: GPU alone
    # falls back to numpy with a warning (Caffe's example solvers all say GPU).
    select_mode(bool(gpus), param.device_id, required=asked_for_gpu)
    # As in caffe.cpp, the handler is in place before the solver is built: a signal
    # while the nets are set up or the snapshot is restored is not lost (nor fatal),
    # but acted on at the first iteration's check.
    with SignalHandler(args.sigint_effect, args.sighup_effect) as signals:
        solver = get_solver(param, args.solver)
        solver.action_request_function = signals.check_for_signals
        if args.snapshot and common.root_solver():
            logger.info("Resuming from %s", args.snapshot)
            solver.restore(args.snapshot)
        if comm is not None:  # every rank now starts from rank 0's weights and state
            parallel.MPIDataParallel(solver, comm)
        if masks is not None:  # checked against the net, applied now and after every update
            pruning.attach(solver, masks, args.prune_mask)
        logger.info("Starting Optimization")
        # numpy's overflow warnings would only repeat, less precisely, what the solver
        # says when the loss stops being finite (the iteration and the first layer at fault).
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            solver.solve()
    return 0


def test(args) -> int:
    from minicaffe.log import format_number as fmt
    from minicaffe.net import TEST, Net

    if not args.model:
        raise MinicaffeError("Need a model definition to score: give --model FILE.")
    if not args.weights and not args.quantized:
        raise MinicaffeError("Need model weights to score: give --weights FILE.caffemodel.")
    if args.iterations < 1:
        raise MinicaffeError(f"--iterations must be at least 1, got {args.iterations}")
    select_engine(args.gpu)

    if args.quantized:  # int8 Convolution / InnerProduct (minicaffe/quantize.py); --weights
        from minicaffe.quantize import QuantizedNet  # then only for the other layers' parameters
        net = QuantizedNet(args.model, args.quantized, weights=args.weights, phase=TEST,
                           level=args.level, stages=parse_stages(args.stage))
    else:
        net = Net(args.model, TEST, level=args.level, stages=parse_stages(args.stage))
        net.copy_trained_layers_from(args.weights)
    logger.info("Running for %d iterations.", args.iterations)
    totals: list[float] = []
    loss = 0.0
    for i in range(args.iterations):
        loss += net.forward_loss()
        idx = 0
        for name, blob in zip(net.output_blob_names, net.output_blobs):
            for score in blob.cpu_data().ravel():
                if i == 0:
                    totals.append(float(score))
                else:
                    totals[idx] += float(score)
                idx += 1
                logger.info("Batch %d, %s = %s", i, name, fmt(score))
    logger.info("Loss: %s", fmt(loss / args.iterations))
    idx = 0
    for name, blob, weight in zip(net.output_blob_names, net.output_blobs, net.output_blob_loss_weights):
        for _ in range(blob.count):
            mean = totals[idx] / args.iterations
            suffix = f" (* {fmt(weight)} = {fmt(weight * mean)} loss)" if weight else ""
            logger.info("%s = %s%s", name, fmt(mean), suffix)
            idx += 1
    return 0


def time(args) -> int:
    """Benchmark a model's layers, forward and backward (Caffe's `caffe time`).

    No solver and no update: a warm-up forward and backward, then `iterations` timed
    passes through every layer. On the device, kernels run asynchronously, so the
    queue is finished before each clock reading; each layer's time is then its own.
    """
    from minicaffe.tools.time import time_net

    if not args.model:
        raise MinicaffeError("Need a model definition to time: give --model FILE.")
    if args.iterations < 1:
        raise MinicaffeError(f"--iterations must be at least 1, got {args.iterations}")
    select_engine(args.gpu)
    time_net(args.model, args.iterations, phase=args.phase, level=args.level,
             stages=parse_stages(args.stage))
    return 0


def device_query(args) -> int:
    """Describe an OpenCL device (Caffe's `caffe device_query`); the selected one by default."""
    from minicaffe import opencl
    gpus = parse_gpus(args.gpu)
    for gpu in gpus or [None]:
        if gpu is not None:
            logger.info("Querying GPUs %d", gpu)
        print(opencl.device_query(gpu))
    return 0


def convert_mnist_data(args) -> int:
    from minicaffe.io import mnist
    mnist.convert_mnist_data(args.images, args.labels, args.db, args.backend)
    return 0


def data(args) -> int:
    from minicaffe.io import mnist
    if args.dataset != "mnist":
        raise MinicaffeError(f"unknown data set {args.dataset!r}; known: mnist")
    mnist.download_mnist(args.dest)
    return 0


# ---------------------------------------------------------------- parser

def _flag(parser, name: str, **kwargs) -> None:
    """A flag that answers to `--name` and to Caffe's (gflags') `-name`."""
    parser.add_argument(f"--{name}", f"-{name}", **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="minicaffe: Caffe's command line brew, in Python.",
        epilog="Logs are written to stderr in Caffe's (glog's) format; set GLOG_minloglevel=1 "
               "to show warnings and errors only.")
    verbs = parser.add_subparsers(dest="command", metavar="command", required=True)

    p = verbs.add_parser("train", help="train or finetune a model")
    _flag(p, "solver", help="the solver definition protocol buffer text file")
    _flag(p, "snapshot", help="optional; the .solverstate to resume training from")
    _flag(p, "weights", help="optional; pretrained .caffemodel(s) to finetune from, separated by ','. "
                             "Cannot be set together with --snapshot")
    _flag(p, "gpu", help="optional; run in GPU mode on this device id ('all' means device 0); "
                         "under mpiexec, a list 0,1 gives rank r the r-th id")
    _flag(p, "level", type=int, default=0, help="optional; the train net's level")
    _flag(p, "stage", help="optional; the train net's stages, separated by ','")
    _flag(p, "sigint_effect", default="stop", choices=("stop", "snapshot", "none"),
          help="what SIGINT (Ctrl-C) does: stop (after a snapshot), snapshot, or none (default: stop)")
    _flag(p, "sighup_effect", default="snapshot", choices=("stop", "snapshot", "none"),
          help="what SIGHUP does (default: snapshot)")
    p.add_argument("--prune-mask", "--prune_mask", dest="prune_mask",
                   help="optional (minicaffe only); a mask file from `minicaffe prune`: the weights "
                        "it prunes are zeroed and kept at zero after every update")
    p.set_defaults(func=train)

    p = verbs.add_parser("test", help="score a model")
    _flag(p, "model", help="the model definition protocol buffer text file")
    _flag(p, "weights", help="the trained .caffemodel to score")
    _flag(p, "quantized", help="optional; score this int8 model (from `minicaffe quantize`) instead; "
                               "--weights is then needed only for layers it does not hold")
    _flag(p, "iterations", type=int, default=50, help="the number of batches to run (default: 50)")
    _flag(p, "gpu", help="optional; run in GPU mode on this device id")
    _flag(p, "level", type=int, default=0, help="optional; the net's level")
    _flag(p, "stage", help="optional; the net's stages, separated by ','")
    p.set_defaults(func=test)

    p = verbs.add_parser("time", help="benchmark a model's execution time, layer by layer")
    _flag(p, "model", help="the model definition protocol buffer text file")
    _flag(p, "iterations", type=int, default=50, help="the number of timed passes (default: 50)")
    _flag(p, "gpu", help="optional; run in GPU mode on this device id")
    _flag(p, "phase", default="TRAIN", type=str.upper, choices=("TRAIN", "TEST"),
          help="the net's phase (default: TRAIN)")
    _flag(p, "level", type=int, default=0, help="optional; the net's level")
    _flag(p, "stage", help="optional; the net's stages, separated by ','")
    p.set_defaults(func=time)

    p = verbs.add_parser("device_query", help="show OpenCL device information")
    _flag(p, "gpu", help="optional; the device id(s) to query, separated by ',' (default: the selected device)")
    p.set_defaults(func=device_query)

    p = verbs.add_parser("convert_mnist_data", help="convert MNIST IDX files to an LMDB of Datums")
    p.add_argument("images", help="the images file, e.g. train-images-idx3-ubyte(.gz)")
    p.add_argument("labels", help="the labels file, e.g. train-labels-idx1-ubyte(.gz)")
    p.add_argument("db", help="the LMDB folder to create")
    _flag(p, "backend", default="lmdb", help="the db backend (lmdb or leveldb)")
    p.set_defaults(func=convert_mnist_data)

    p = verbs.add_parser("data", help="download a data set")
    p.add_argument("dataset", choices=("mnist",), help="the data set")
    _flag(p, "dest", default="data/mnist", help="the folder to download into (default: data/mnist)")
    p.set_defaults(func=data)

    from minicaffe.tools import (compute_image_mean, convert_imageset, draw, export_onnx,
                                 extract_features, plot, prune, quantize, summary, upgrade)
    for tool in (draw, plot, summary, convert_imageset, compute_image_mean, extract_features, upgrade,
                 prune, quantize, export_onnx):
        tool.register(verbs)
    return parser


def _rank_prefix() -> str:
    """`rank 1 of 2: ` in data-parallel training, so an error says which process failed."""
    count = common.solver_count()
    return f"rank {common.solver_rank()} of {count}: " if count > 1 else ""


def error_paragraph(err: BaseException) -> str:
    """`minicaffe: error: ...` as one paragraph (no blank lines, no traceback)."""
    lines = [line.rstrip() for line in str(err).strip().splitlines() if line.strip()]
    return f"{PROG}: error: {_rank_prefix()}" + "\n".join(lines or [type(err).__name__])


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    code = _run(args)
    if code and common.solver_count() > 1:
        # The other ranks may be waiting for this one in the next Allreduce: stop them all.
        from minicaffe import parallel
        parallel.abort(code)
    return code


def _run(args) -> int:
    try:
        return args.func(args)
    except MinicaffeError as err:
        print(error_paragraph(err), file=sys.stderr)
        return 1
    except OSError as err:  # a full disk, a folder we may not write: still the user's to fix
        print(error_paragraph(f"{err.filename + ': ' if err.filename else ''}{err.strerror or err}"),
              file=sys.stderr)
        return 1
    except MemoryError as err:  # numpy says how much it asked for: enough to spot a typo'd size
        print(error_paragraph(f"out of memory: {err or 'MemoryError'}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug: its traceback, but with MPI also the rank, and all ranks end
        if common.solver_count() <= 1:
            raise
        print(f"{PROG}: error: {_rank_prefix()}unexpected error\n{traceback.format_exc()}",
              file=sys.stderr, end="")
        return 1


if __name__ == "__main__":
    sys.exit(main())
