"""End to end: Caffe's LeNet example trains on the shipped MNIST digits, and resumes exactly.

The fast tests run in CI; `-m slow` adds the 2,000-iteration run that must reach the
acceptance accuracy (97.5% on the official 10k test set).
"""
from pathlib import Path

import numpy as np
import pytest

from minicaffe import common
from minicaffe.io.mnist import convert_mnist_data
from minicaffe.protoio import read_net_param, read_solver_param
from minicaffe.solvers import get_solver
from minicaffe.testing.lenet import lenet_with_input_layer

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "mnist"


@pytest.fixture(scope="module")
def lmdbs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mnist")
    train, test = folder / "mnist_train_lmdb", folder / "mnist_test_lmdb"
    convert_mnist_data(DATA / "train-10k-images-idx3-ubyte.gz", DATA / "train-10k-labels-idx1-ubyte.gz", train)
    convert_mnist_data(DATA / "t10k-images-idx3-ubyte.gz", DATA / "t10k-labels-idx1-ubyte.gz", test)
    return train, test


def lenet_solver(lmdbs, tmp_path, mode="cpu", **overrides):
    """examples/mnist/lenet_solver.prototxt with the example net inlined and paths redirected."""
    param = read_solver_param(ROOT / "examples/mnist/lenet_solver.prototxt")
    net = read_net_param(ROOT / param.net)
    for layer, source in zip([l for l in net.layer if l.type == "Data"], lmdbs):
        layer.data_param.source = str(source)
    param.ClearField("net")
    param.net_param.CopyFrom(net)
    tmp_path.mkdir(parents=True, exist_ok=True)
    param.snapshot_prefix = str(tmp_path / "lenet")
    param.solver_mode = param.GPU if mode == "gpu" else param.CPU
    param.random_seed = 1
    param.display = 0
    for field, value in overrides.items():
        if field == "test_iter":
            param.test_iter[:] = [value]
        else:
            setattr(param, field, value)
    return param


def final_accuracy(solver) -> float:
    net = solver.test_nets[0]
    net.share_trained_layers_with(solver.net)  # as Solver.test does
    for layer in net.data_layers():
        layer.set_batch_index(0)
    scores = []
    for _ in range(solver.param.test_iter[0]):
        net.forward_loss()
        scores.append(float(net.blobs["accuracy"].cpu_data()))
    return float(np.mean(scores))


def test_lenet_learns_quickly(lmdbs, tmp_path):
    solver = get_solver(lenet_solver(lmdbs, tmp_path, max_iter=200, test_interval=10**6, test_initialization=False, test_iter=20,
                                     snapshot=0, snapshot_after_train=False))
    solver.solve()
    assert solver.iter == 200
    assert final_accuracy(solver) >= 0.90


def test_resume_gives_identical_weights(lmdbs, tmp_path):
    """200 iterations straight == 100, snapshot, resume in a fresh solver, 100 more."""
    common_args = dict(max_iter=200, test_interval=10**6, test_initialization=False, test_iter=1, snapshot_after_train=False)
    straight = get_solver(lenet_solver(lmdbs, tmp_path / "a", snapshot=0, **common_args))
    straight.solve()

    first = get_solver(lenet_solver(lmdbs, tmp_path / "b", snapshot=100, **common_args))
    first.step(100)
    state = tmp_path / "b" / "lenet_iter_100.solverstate"
    assert state.exists()
    resumed = get_solver(lenet_solver(lmdbs, tmp_path / "b", snapshot=0, **common_args))
    resumed.solve(str(state))
    assert resumed.iter == 200
    for name, blobs in straight.net.params.items():
        for a, b in zip(blobs, resumed.net.params[name]):
            np.testing.assert_array_equal(a.cpu_data(), b.cpu_data(), err_msg=name)


@pytest.mark.slow
def test_lenet_reaches_acceptance_accuracy_at_2000_iterations(lmdbs, tmp_path):
    solver = get_solver(lenet_solver(lmdbs, tmp_path, max_iter=2000, test_interval=10**6, test_initialization=False,
                                     snapshot=0, snapshot_after_train=False))
    solver.solve()
    accuracy = final_accuracy(solver)
    print(f"LeNet, 2000 iterations, numpy engine: test accuracy {accuracy:.4f}")
    assert accuracy >= 0.975


@pytest.mark.opencl
def test_engines_agree_on_lenet():
    """Issue acceptance: identical weights and inputs give the same loss, tops and
    gradients on both engines, to 1e-4 absolute."""
    from minicaffe.io.idx import read_idx
    from minicaffe.net import Net
    images = read_idx(DATA / "t10k-images-idx3-ubyte.gz")[:64].astype(np.float32) / 256
    labels = read_idx(DATA / "t10k-labels-idx1-ubyte.gz")[:64].astype(np.float32)
    results = {}
    for mode in ("cpu", "gpu"):
        with common.using_mode(mode):
            common.set_random_seed(7)  # the same xavier weights on both engines
            net = Net(lenet_with_input_layer(64))
            net.blobs["data"].data[...] = images[:, None]
            net.blobs["label"].data[...] = labels
            loss = net.forward_backward()
            results[mode] = (loss, {n: (b.cpu_data().copy(), b.cpu_diff().copy()) for n, b in net.blobs.items()},
                             {n: [p.cpu_diff().copy() for p in ps] for n, ps in net.params.items()})
    (cpu_loss, cpu_blobs, cpu_params), (gpu_loss, gpu_blobs, gpu_params) = results["cpu"], results["gpu"]
    assert abs(cpu_loss - gpu_loss) < 1e-4
    for name, (data, diff) in cpu_blobs.items():
        np.testing.assert_allclose(gpu_blobs[name][0], data, rtol=0, atol=1e-4, err_msg=f"top {name}")
        if name not in ("data", "label"):
            np.testing.assert_allclose(gpu_blobs[name][1], diff, rtol=0, atol=1e-4, err_msg=f"diff {name}")
    for name, diffs in cpu_params.items():
        for i, (c, g) in enumerate(zip(diffs, gpu_params[name])):
            np.testing.assert_allclose(g, c, rtol=0, atol=1e-4, err_msg=f"param {name}[{i}]")


@pytest.mark.slow
@pytest.mark.opencl
def test_lenet_on_opencl_reaches_acceptance_accuracy(lmdbs, tmp_path):
    solver = get_solver(lenet_solver(lmdbs, tmp_path, mode="gpu", max_iter=2000,
                                     test_interval=10**6, test_initialization=False,
                                     snapshot=0, snapshot_after_train=False))
    try:
        solver.solve()
        accuracy = final_accuracy(solver)
    finally:
        common.set_mode(common.CPU)  # the solver switched the process to the device
    print(f"LeNet, 2000 iterations, OpenCL engine: test accuracy {accuracy:.4f}")
    assert accuracy >= 0.975
