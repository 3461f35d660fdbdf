"""Data-parallel training over MPI (minicaffe.parallel): 2 ranks train as one process with
iter_size 2 over the same items; rank 0 alone logs and snapshots; a failure on one rank
stops both; a missing mpi4py is one clear line.

The multi-process tests launch MPICH's `mpiexec` (from the mpich wheel of the `mpi`
extra, beside this Python or on PATH). Without it they skip on a workstation and fail
under CI (CI=true), which installs `.[test]` and so has it.
"""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import lmdb
import numpy as np
import pytest
from google.protobuf import text_format

from minicaffe import cli, common, parallel, protoio
from minicaffe.io.db import open_writer
from minicaffe.io.mnist import convert_mnist_data
from minicaffe.net import Net
from minicaffe.proto import caffe_pb2
from minicaffe.solvers import get_solver

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "mnist"
TIMEOUT = 120  # seconds for one mpiexec run: a hang fails the test instead of the suite
TRAIN_DIGITS = 51  # odd, so the ranks' shares wrap around the database differently

NET = """
name: "tiny"
layer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { scale: 0.00390625 }
  data_param { source: "train_lmdb" batch_size: 8 backend: LMDB } }
layer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { scale: 0.00390625 }
  data_param { source: "test_lmdb" batch_size: 16 backend: LMDB } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 5 stride: 2 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "ip1" type: "InnerProduct" bottom: "conv1" top: "ip1"
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "accuracy" type: "Accuracy" bottom: "ip1" bottom: "label" top: "accuracy"
  include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }
"""
SOLVER = """net: "net.prototxt" test_iter: 2 test_interval: 2 base_lr: 0.05 momentum: 0.9
weight_decay: 0.0005 lr_policy: "inv" gamma: 0.0001 power: 0.75 display: 1 max_iter: 4
snapshot: 2 snapshot_prefix: "snaps/tiny" solver_mode: CPU random_seed: 7
"""

# Rank 1 starts from other random weights (seed 7 + 1), so equal weights at the end show
# the broadcast; each rank saves what it holds.
API_SCRIPT = """
import sys
import numpy as np
import minicaffe as caffe
from minicaffe import parallel
comm = parallel.init()
solver = caffe.get_solver("solver.prototxt")
initial = [p.data.copy() for p in solver.net.learnable_params]
if caffe.solver_rank() == 0:
    solver.restore(sys.argv[1])
parallel.MPIDataParallel(solver, comm)
solver.step(2)
np.savez(f"rank{caffe.solver_rank()}.npz", iter=solver.iter, initial=np.concatenate([a.ravel() for a in initial]),
         weights=np.concatenate([p.data.ravel() for p in solver.net.learnable_params]),
         history=np.concatenate([h.data.ravel() for h in solver.history]))
"""

# Rank 1 alone gets a SIGINT during iteration 3; both ranks must stop after that iteration
# (neither may leave the other waiting in an Allreduce), rank 0 writing the final snapshot.
SIGNAL_SCRIPT = """
import os, signal
import minicaffe as caffe
from minicaffe import parallel
comm = parallel.init()
solver = caffe.get_solver("solver.prototxt")
def interrupt_rank_1():
    if caffe.solver_rank() == 1 and solver.iter == 3:
        os.kill(os.getpid(), signal.SIGINT)
solver.add_callback(interrupt_rank_1, lambda: None)
parallel.MPIDataParallel(solver, comm)
solver.solve()
print(f"rank {caffe.solver_rank()} stopped at iteration {solver.iter}", flush=True)
"""


def find_mpiexec() -> str:
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found:
        return found
    message = ("mpiexec not found beside this Python or on PATH; install the mpi extra: "
               "pip install 'minicaffe[mpi]'")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def mpirun(tmp_path, n, *argv):
    """Run `argv` on `n` ranks in tmp_path; each output line starts with `[rank]`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("GLOG_minloglevel", None)
    return subprocess.run([find_mpiexec(), "-prepend-rank", "-n", str(n), *argv], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def lmdbs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    convert_mnist_data(DATA / "train-10k-images-idx3-ubyte.gz", DATA / "train-10k-labels-idx1-ubyte.gz",
                       folder / "train_lmdb", limit=TRAIN_DIGITS, progress=False)
    convert_mnist_data(DATA / "t10k-images-idx3-ubyte.gz", DATA / "t10k-labels-idx1-ubyte.gz",
                       folder / "test_lmdb", limit=32, progress=False)
    return folder


@pytest.fixture
def workdir(tmp_path, lmdbs, monkeypatch):
    """A folder with the tiny net, its solver and links to the digit databases."""
    for name in ("train_lmdb", "test_lmdb"):
        (tmp_path / name).symlink_to(lmdbs / name)
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(SOLVER)
    (tmp_path / "snaps").mkdir()
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    common.set_solver_count(1)
    common.set_solver_rank(0)


def one_process(workdir, iters=4, restore=None, prefix="single/tiny"):
    """The reference: one process, iter_size 2, same items per update; its final weights."""
    (workdir / prefix).parent.mkdir(exist_ok=True)
    param = protoio.read_solver_param(workdir / "solver.prototxt")
    param.iter_size, param.snapshot_prefix, param.max_iter = 2, str(workdir / prefix), iters
    solver = get_solver(param)
    if restore:
        solver.restore(restore)
    solver.solve()
    return solver


def weights_of(path) -> dict:
    net = protoio.read_binary(path, caffe_pb2.NetParameter())
    return {f"{layer.name}/{i}": np.array(blob.data, dtype=np.float32)
            for layer in net.layer for i, blob in enumerate(layer.blobs)}


def rank_lines(output: str, rank: int) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(f"[{rank}] ")]


# ---------------------------------------------------------------- without MPI

def test_data_layer_takes_every_nth_item_from_its_rank(workdir):
    """Caffe's DataLayer::Skip: item i goes to rank i mod N; a TEST net reads every item."""
    labels = np.array([caffe_pb2.Datum.FromString(value).label
                       for _, value in read_records(workdir / "train_lmdb")])
    batches = {}
    for rank in (0, 1):
        common.set_solver_count(2)
        common.set_solver_rank(rank)
        for phase in (caffe_pb2.TRAIN, caffe_pb2.TEST):
            param = text_format.Parse(NET.replace('"test_lmdb"', '"train_lmdb"'), caffe_pb2.NetParameter())
            param.state.phase = phase
            net = Net(param)
            net.forward()
            batches[rank, phase] = net.blobs["label"].data.copy()
    # TRAIN reads batches of 8, TEST of 16, from the start of the same database
    np.testing.assert_array_equal(batches[0, caffe_pb2.TRAIN], labels[0:16:2])
    np.testing.assert_array_equal(batches[1, caffe_pb2.TRAIN], labels[1:17:2])
    np.testing.assert_array_equal(batches[0, caffe_pb2.TEST], labels[:16])
    np.testing.assert_array_equal(batches[1, caffe_pb2.TEST], labels[:16])


def read_records(path) -> list[tuple[bytes, bytes]]:
    with lmdb.open(str(path), readonly=True, lock=False) as env, env.begin() as txn:
        return list(txn.cursor())


def test_single_process_never_imports_mpi4py(workdir, monkeypatch, capsys):
    """mpiexec -n 1 (PMI_SIZE=1) is a plain run: training works with mpi4py unimportable."""
    monkeypatch.setenv("PMI_SIZE", "1")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # `import mpi4py` now raises ImportError
    assert cli.main(["train", "--solver", "solver.prototxt"]) == 0
    assert (workdir / "snaps" / "tiny_iter_4.caffemodel").exists()


@pytest.mark.parametrize("variable", ["PMI_SIZE", "OMPI_COMM_WORLD_SIZE"])
def test_missing_mpi4py_under_mpiexec_is_one_line(workdir, monkeypatch, capsys, variable):
    monkeypatch.setenv(variable, "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    code = cli.main(["train", "--solver", "solver.prototxt"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    message = err.strip().splitlines()[-1]
    assert message.startswith("minicaffe: error: this process is one of 2 started by an MPI launcher")
    assert f"{variable}=2" in message and "pip install 'minicaffe[mpi]'" in message
    assert common.solver_count() == 1  # nothing was half set up


def test_missing_mpi4py_from_python_names_the_extra(monkeypatch):
    monkeypatch.delenv("PMI_SIZE", raising=False)
    monkeypatch.delenv("OMPI_COMM_WORLD_SIZE", raising=False)
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(common.MinicaffeError, match=r"MPI training was asked for, .*pip install "
                                                      r"'minicaffe\[mpi\]'"):
        parallel.init()


def test_pycaffe_names_for_the_solver_count_and_rank(workdir):
    import minicaffe
    assert (minicaffe.solver_count(), minicaffe.solver_rank()) == (1, 0)
    minicaffe.set_solver_count(3)
    minicaffe.set_solver_rank(2)
    assert (common.solver_count(), common.solver_rank(), common.root_solver()) == (3, 2, False)
    with pytest.raises(ValueError):
        minicaffe.set_solver_count(0)


def test_launched_size_reads_mpich_and_open_mpi():
    assert parallel.launched_size({}) == 1
    assert parallel.launched_size({"PMI_SIZE": "4", "PMI_RANK": "2"}) == 4
    assert parallel.launched_size({"OMPI_COMM_WORLD_SIZE": "3"}) == 3


# ---------------------------------------------------------------- with MPI (2 ranks)

def test_two_ranks_equal_one_process_with_iter_size_2(workdir):
    """The CLI under mpiexec -n 2 gives the weights of one process with iter_size 2; rank 0
    alone logs at INFO and writes snapshots."""
    run = mpirun(workdir, 2, sys.executable, "-m", "minicaffe", "train", "--solver", "solver.prototxt")
    assert run.returncode == 0, run.stdout + run.stderr
    output = run.stdout + run.stderr
    rank0, rank1 = rank_lines(output, 0), rank_lines(output, 1)
    assert any("Iteration 4, Testing net (#0)" in line for line in rank0)
    assert any("Snapshotting to binary proto file snaps/tiny_iter_4.caffemodel" in line for line in rank0)
    assert not [line for line in rank1 if line[4:5] == "I"], "rank 1 logged at INFO"
    assert sorted(p.name for p in (workdir / "snaps").iterdir()) == [
        "tiny_iter_2.caffemodel", "tiny_iter_2.solverstate",
        "tiny_iter_4.caffemodel", "tiny_iter_4.solverstate"]

    one_process(workdir)
    for it in (2, 4):
        parallel_weights = weights_of(workdir / f"snaps/tiny_iter_{it}.caffemodel")
        single_weights = weights_of(workdir / f"single/tiny_iter_{it}.caffemodel")
        assert parallel_weights.keys() == single_weights.keys()
        for name, value in single_weights.items():
            np.testing.assert_allclose(parallel_weights[name], value, rtol=1e-5, atol=1e-7, err_msg=name)
        # and training moved them: the comparison is not of initial weights
    first = weights_of(workdir / "snaps/tiny_iter_2.caffemodel")["ip1/0"]
    assert not np.allclose(first, weights_of(workdir / "snaps/tiny_iter_4.caffemodel")["ip1/0"])


def test_python_api_broadcasts_weights_and_resumed_state(workdir):
    """From Python: ranks seeded differently end equal; rank 0's restored iteration and
    history reach rank 1; the run equals one process resumed with iter_size 2."""
    one_process(workdir, iters=2)  # single/tiny_iter_2.solverstate, after 2 updates
    state = workdir / "single/tiny_iter_2.solverstate"
    (workdir / "train.py").write_text(textwrap.dedent(API_SCRIPT))
    run = mpirun(workdir, 2, sys.executable, "train.py", str(state))
    assert run.returncode == 0, run.stdout + run.stderr
    ranks = [np.load(workdir / f"rank{r}.npz") for r in (0, 1)]
    assert not np.array_equal(ranks[0]["initial"], ranks[1]["initial"])  # seeds 7 and 8
    assert int(ranks[0]["iter"]) == int(ranks[1]["iter"]) == 4
    np.testing.assert_array_equal(ranks[0]["weights"], ranks[1]["weights"])
    np.testing.assert_array_equal(ranks[0]["history"], ranks[1]["history"])

    reference = one_process(workdir, iters=4, restore=state, prefix="resumed/tiny")
    expected = np.concatenate([p.data.ravel() for p in reference.net.learnable_params])
    np.testing.assert_allclose(ranks[0]["weights"], expected, rtol=1e-5, atol=1e-7)


def test_failure_on_rank_1_stops_both_ranks_naming_it(workdir):
    """A damaged record in rank 1's share (odd positions): rank 1 fails reading it, prints
    the error with its rank, and rank 0, waiting in the Allreduce, is stopped too."""
    damaged = workdir / "damaged_lmdb"
    good = read_records(workdir / "train_lmdb")
    with open_writer(damaged, "lmdb", commit_every=1000, overwrite=False) as db:
        for i, (key, value) in enumerate(good[:40]):
            db.put(key.decode(), b"not a datum" if i == 21 else value)
    (workdir / "net.prototxt").write_text(NET.replace('source: "train_lmdb"', 'source: "damaged_lmdb"'))
    run = mpirun(workdir, 2, sys.executable, "-m", "minicaffe", "train", "--solver", "solver.prototxt")
    output = run.stdout + run.stderr
    assert run.returncode != 0
    errors = [line for line in rank_lines(output, 1) if "minicaffe: error:" in line]
    assert errors and "rank 1 of 2: " in errors[0], output
    assert "record '00000021'" in output and "not a serialized Datum" in output
    assert not (workdir / "snaps" / "tiny_iter_4.caffemodel").exists()


def test_a_signal_on_one_rank_stops_all_ranks_after_the_same_iteration(workdir):
    (workdir / "solver.prototxt").write_text(SOLVER.replace("max_iter: 4", "max_iter: 1000"))
    (workdir / "train.py").write_text(textwrap.dedent(SIGNAL_SCRIPT))
    run = mpirun(workdir, 2, sys.executable, "train.py")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "[0] rank 0 stopped at iteration 4" in run.stdout
    assert "[1] rank 1 stopped at iteration 4" in run.stdout
    assert (workdir / "snaps" / "tiny_iter_4.caffemodel").exists()  # snapshot_after_train


@pytest.mark.opencl
def test_gpu_list_gives_each_rank_its_own_device(workdir):
    """--gpu 0,7: rank 1 takes device 7, which does not exist, and says so with its rank.

    Rank 0 must get a working device 0 for this to show anything: without one it fails
    too, and whichever rank fails first stops the other, maybe before it has printed.
    """
    run = mpirun(workdir, 2, sys.executable, "-m", "minicaffe", "train", "--solver", "solver.prototxt",
                 "--gpu", "0,7")
    assert run.returncode != 0
    errors = [line for line in rank_lines(run.stdout + run.stderr, 1) if "minicaffe: error:" in line]
    assert errors and "rank 1 of 2: " in errors[0] and "7" in errors[0].split("rank 1 of 2: ")[1]


@pytest.mark.opencl
def test_two_ranks_sharing_one_opencl_device_equal_one_numpy_process(workdir):
    """The OpenCL engine's diffs go to the host for the Allreduce and back: both ranks on
    device 0 train as one numpy process with iter_size 2 (to the engines' float agreement)."""
    run = mpirun(workdir, 2, sys.executable, "-m", "minicaffe", "train", "--solver", "solver.prototxt",
                 "--gpu", "0")
    assert run.returncode == 0, run.stdout + run.stderr
    assert any("Use GPU with device ID 0" in line for line in rank_lines(run.stdout + run.stderr, 0))
    one_process(workdir)
    parallel_weights = weights_of(workdir / "snaps/tiny_iter_4.caffemodel")
    for name, value in weights_of(workdir / "single/tiny_iter_4.caffemodel").items():
        np.testing.assert_allclose(parallel_weights[name], value, rtol=1e-4, atol=1e-6, err_msg=name)
