"""The OpenCL engine keeps a training iteration on the device.

Acceptance test: once LeNet is warm (weights and history on the device, kernels
built), one forward/backward/update iteration copies only the input batch in (data
and label: the host wrote them) and the scalar loss out. Every activation, gradient,
weight and history blob stays on the device. When a copy sneaks in, the failure names
the blob and layer that made it (syncedmem.recording_transfers).
"""
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from minicaffe import common, opencl
from minicaffe.blob import Blob
from minicaffe.io.idx import read_idx
from minicaffe.proto import caffe_pb2
from minicaffe.solvers import get_solver
from minicaffe.syncedmem import SyncedMemory, recording_transfers
from minicaffe.testing.lenet import lenet_with_input_layer

ROOT = Path(__file__).resolve().parents[1]
BATCH = 16  # LeNet's 64 works too; 16 keeps the test quick on a CPU OpenCL device

pytestmark = pytest.mark.opencl


@pytest.fixture(autouse=True)
def keep_engine():
    old = common.mode()
    yield
    common.set_mode(old)


def mnist_batches(count):
    """`count` batches of real MNIST test images (scaled by 1/256, as the example does)."""
    images = read_idx(ROOT / "data/mnist/t10k-images-idx3-ubyte.gz")[:count * BATCH]
    labels = read_idx(ROOT / "data/mnist/t10k-labels-idx1-ubyte.gz")[:count * BATCH]
    images = images.astype(np.float32)[:, None] / 256
    return [(images[i * BATCH:(i + 1) * BATCH], labels[i * BATCH:(i + 1) * BATCH].astype(np.float32))
            for i in range(count)]


SOLVERS = {
    # examples/mnist/lenet_solver.prototxt's settings
    "SGD": 'base_lr: 0.01 momentum: 0.9 weight_decay: 0.0005 lr_policy: "inv" gamma: 0.0001 power: 0.75',
    # every other device step: clipping (a device reduction), L1 decay, iter_size normalization
    "Nesterov": 'type: "Nesterov" base_lr: 0.01 momentum: 0.9 weight_decay: 0.0005 '
                'regularization_type: "L1" clip_gradients: 0.5 iter_size: 2 lr_policy: "fixed"',
    "Adam": 'type: "Adam" base_lr: 0.001 momentum: 0.9 momentum2: 0.999 weight_decay: 0.0005 lr_policy: "fixed"',
    # Caffe's examples/mnist/mnist_autoencoder_solver_adagrad, lenet_solver_rmsprop and
    # lenet_adadelta_solver settings
    "AdaGrad": 'type: "AdaGrad" base_lr: 0.01 weight_decay: 0.0005 lr_policy: "fixed"',
    "RMSProp": 'type: "RMSProp" base_lr: 0.01 momentum: 0.0 rms_decay: 0.98 weight_decay: 0.0005 '
               'lr_policy: "inv" gamma: 0.0001 power: 0.75',
    "AdaDelta": 'type: "AdaDelta" base_lr: 1.0 momentum: 0.95 delta: 1e-6 weight_decay: 0.0005 lr_policy: "fixed"',
}


def lenet_solver(kind: str, mode: str):
    param = text_format.Parse(
        SOLVERS[kind] + f' max_iter: 100 display: 0 random_seed: 1 snapshot_after_train: false '
        f'solver_mode: {"GPU" if mode == common.GPU else "CPU"}', caffe_pb2.SolverParameter())
    param.net_param.CopyFrom(lenet_with_input_layer(BATCH))
    return get_solver(param)


def feed(solver, batch):
    x, y = batch
    solver.net.blobs["data"].mutable_cpu_data()[...] = x
    solver.net.blobs["label"].mutable_cpu_data()[...] = y


def memory_names(solver) -> dict[int, str]:
    """id(SyncedMemory) -> what it is: a net blob, a layer's parameter or helper blob, a history."""
    names: dict[int, str] = {}

    def name(blob, what):
        names.setdefault(id(blob.data_mem), f"{what} data")
        names.setdefault(id(blob.diff_mem), f"{what} diff")

    for blob_name, blob in solver.net.blobs.items():
        name(blob, f"blob {blob_name!r}")
    for layer_name, layer in zip(solver.net.layer_names, solver.net.layers):
        for i, blob in enumerate(layer.blobs):
            name(blob, f"layer {layer_name!r} ({layer.type}) parameter {i}")
        for attr, value in vars(layer).items():
            if isinstance(value, Blob):
                name(value, f"layer {layer_name!r} ({layer.type}) helper blob {attr}")
    for i, blob in enumerate(solver.history):
        name(blob, f"solver history {i}")
    return names


def describe(record, solver) -> str:
    names = memory_names(solver)
    return "; ".join(f"{direction}: {names.get(id(mem), f'unnamed memory of {mem.size} values')}"
                     for direction, mem in record)


@pytest.mark.parametrize("kind", sorted(SOLVERS))
def test_a_lenet_iteration_copies_only_the_batch_in_and_the_loss_out(kind):
    with common.using_mode(common.GPU):
        check_one_iteration_copies_only_the_batch_and_the_loss(lenet_solver(kind, common.GPU))


def check_one_iteration_copies_only_the_batch_and_the_loss(solver):
    batches = mnist_batches(3)
    for batch in batches[:2]:  # warm-up: weights go to the device, kernels get built
        feed(solver, batch)
        solver.step(1)
    before = [p.cpu_data().copy() for p in solver.net.learnable_params]
    feed(solver, batches[2])
    SyncedMemory.transfers.update(to_cpu=0, to_gpu=0)
    with recording_transfers() as record:
        solver.step(1)
    copies = dict(SyncedMemory.transfers)
    ins = [what for what, _ in record if what == "to_gpu"]
    assert copies["to_gpu"] == len(ins) == 2, f"expected only data and label in: {describe(record, solver)}"
    assert copies["to_cpu"] <= solver.param.iter_size, f"expected only the loss out: {describe(record, solver)}"
    # Only the right blobs moved: the two inputs in, the loss out.
    names = memory_names(solver)
    moved = sorted(names.get(id(mem), "?") for _, mem in record)
    assert moved[:2] == ["blob 'data' data", "blob 'label' data"] and \
        all(m == "blob 'loss' data" for m in moved[2:]), describe(record, solver)
    # ... and the iteration did train: every parameter moved, the loss is a number.
    assert np.isfinite(solver.smoothed_loss)
    for b, p in zip(before, solver.net.learnable_params):
        assert not np.array_equal(b, p.cpu_data())


def test_the_device_trains_lenet_like_numpy():
    """Three SGD iterations from the same weights and batches: both engines agree."""
    batches = mnist_batches(3)
    weights = {}
    for mode in (common.CPU, common.GPU):
        with common.using_mode(mode):
            solver = lenet_solver("SGD", mode)
            for batch in batches:
                feed(solver, batch)
                solver.step(1)
            weights[mode] = [p.cpu_data().copy() for p in solver.net.learnable_params]
    for cpu, gpu in zip(weights[common.CPU], weights[common.GPU]):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-3, atol=1e-5)
