"""pycaffe's Python interface: `import caffe` is minicaffe, and Net and the solvers answer
pycaffe's calls with pycaffe's results (BVLC Caffe's python/caffe/pycaffe.py and
_caffe.cpp define them)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import caffe
import minicaffe
from minicaffe import common
from minicaffe.common import MinicaffeError

ROOT = Path(__file__).resolve().parents[1]

# Affine then softmax over an input of 2 features: small enough to compute by hand.
AFFINE = """name: "affine" force_backward: true
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 3 dim: 2 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 1 }
                              bias_filler { type: "gaussian" std: 1 } } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""

# A net with a loss, fed by DummyData, as pycaffe's examples train.
TRAINABLE = """name: "trainable" force_backward: true
layer { name: "data" type: "DummyData" top: "data" top: "label"
        dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 }
                           data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" loss_weight: 2 }
"""


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def affine(tmp_path):
    path = tmp_path / "affine.prototxt"
    path.write_text(AFFINE)
    with common.using_mode(common.CPU):
        yield caffe.Net(str(path), caffe.TEST)


@pytest.fixture
def trainable(tmp_path):
    path = tmp_path / "trainable.prototxt"
    path.write_text(TRAINABLE)
    with common.using_mode(common.CPU):
        yield path


# ---------------------------------------------------------------- the `caffe` package

def test_caffe_is_minicaffe_under_pycaffes_names():
    import caffe.io
    import caffe.draw
    from caffe.proto import caffe_pb2
    from caffe import layers as L, params as P
    assert caffe.Net is minicaffe.Net and caffe.Layer is minicaffe.Layer
    assert caffe.io is minicaffe.io and caffe.draw is sys.modules["minicaffe.draw"]
    assert caffe_pb2 is minicaffe.proto.caffe_pb2
    assert (caffe.TRAIN, caffe.TEST) == (caffe_pb2.TRAIN, caffe_pb2.TEST) == (0, 1)
    assert L is minicaffe.layers and P.Pooling.MAX == caffe_pb2.PoolingParameter.MAX
    assert caffe.has_nccl() is False
    assert {"Convolution", "Data", "Python", "DummyData"} <= set(caffe.layer_type_list())


def test_our_layer_modules_and_the_netspec_factory_share_one_name():
    from minicaffe.layers import convolution  # the module of the Convolution layer
    top = minicaffe.layers.Convolution(minicaffe.layers.Input(shape=dict(dim=[1, 1, 5, 5])),
                                       num_output=2, kernel_size=3)
    assert convolution.__name__ == "minicaffe.layers.convolution"
    assert top.to_proto().layer[-1].convolution_param.kernel_size == [3]
    with pytest.raises(AttributeError):
        minicaffe.layers.no_such_module


def test_a_real_caffe_earlier_on_the_path_wins(tmp_path):
    (tmp_path / "caffe").mkdir()
    (tmp_path / "caffe" / "__init__.py").write_text("WHICH = 'the real one'\n")
    code = "import caffe; print(getattr(caffe, 'WHICH', 'minicaffe'))"
    env_path = f"{tmp_path}:{ROOT}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert out.stdout.strip() == "the real one"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, cwd=ROOT)
    assert out.stdout.strip() == "minicaffe"


# ---------------------------------------------------------------- Net

def test_names_and_loss_weights(trainable):
    net = caffe.Net(str(trainable), caffe.TRAIN)
    assert net._layer_names == ["data", "ip", "loss"] == list(net.layer_dict)
    assert net._blob_names == ["data", "label", "ip", "loss"] == list(net.blobs)
    assert net._blob_loss_weights == [0, 0, 0, 2]
    assert list(net.blob_loss_weights.items()) == [("data", 0), ("label", 0), ("ip", 0), ("loss", 2)]
    assert net._outputs == [3] and net.outputs == ["loss"] and net.inputs == []
    assert [layer.type for layer in net.layers] == ["DummyData", "InnerProduct", "SoftmaxWithLoss"]


def test_forward_returns_outputs_or_the_tops_of_end(affine):
    x = np.array([[1, 2], [0, -1], [3, 0.5]], np.float32)
    w, b = (blob.data for blob in affine.params["ip"])
    out = affine.forward(x=x)
    assert list(out) == ["prob"]
    np.testing.assert_allclose(out["prob"], softmax(x @ w.T + b), rtol=1e-5)
    out = affine.forward(start="ip", end="ip", blobs=["x"])
    assert sorted(out) == ["ip", "x"]
    np.testing.assert_allclose(out["ip"], x @ w.T + b, rtol=1e-5)


def test_backward_returns_input_diffs_or_the_bottoms_of_end(affine):
    x = np.array([[1, 2], [0, -1], [3, 0.5]], np.float32)
    affine.forward(x=x)
    w = affine.params["ip"][0].data
    top_diff = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    affine.blobs["ip"].diff[...] = top_diff
    out = affine.backward(start="ip", end="ip")
    assert list(out) == ["x"]  # the bottom of "ip"
    np.testing.assert_allclose(out["x"], top_diff @ w, rtol=1e-5)
    # From the output down: the softmax's Jacobian, then the affine map's.
    p = affine.forward(x=x)["prob"].copy()
    d = np.ones_like(p) * [[1, 0, 0, 0]]
    out = affine.backward(prob=d, diffs=["ip"])
    dz = p * (d - (d * p).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(out["ip"], dz, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["x"], dz @ w, rtol=1e-4, atol=1e-6)


def test_asking_for_an_unknown_blob_or_input_is_an_error(affine):
    with pytest.raises(MinicaffeError, match=r"no blob\(s\) \['nope'\]"):
        affine.forward(blobs=["nope"])
    with pytest.raises(MinicaffeError, match=r"'y' is not an input of net 'affine'"):
        affine.forward(y=np.zeros((3, 2)))
    with pytest.raises(MinicaffeError, match=r"no layer named 'nope'"):
        affine.forward(start="nope")


def test_forward_all_runs_any_number_of_rows_a_batch_at_a_time(affine):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 2)).astype(np.float32)  # batches of 3: 3 + 3 + 1 (padded)
    w, b = (blob.data.copy() for blob in affine.params["ip"])
    out = affine.forward_all(x=x, blobs=["ip"])
    assert affine.blobs["x"].shape == (3, 2)  # the net kept its batch
    np.testing.assert_allclose(out["ip"], x @ w.T + b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["prob"], softmax(x @ w.T + b), rtol=1e-5)


def test_forward_backward_all_batches_inputs_and_output_diffs(affine):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 2)).astype(np.float32)
    d = rng.normal(size=(5, 4)).astype(np.float32)
    w, b = (blob.data.copy() for blob in affine.params["ip"])
    outs, diffs = affine.forward_backward_all(x=x, prob=d)
    p = softmax(x @ w.T + b)
    np.testing.assert_allclose(outs["prob"], p, rtol=1e-5)
    dz = p * (d - (d * p).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(diffs["x"], dz @ w, rtol=1e-4, atol=1e-6)
    with pytest.raises(MinicaffeError, match=r"different lengths"):
        affine.forward_backward_all(x=x, prob=d[:2])


def test_weights_round_trip_through_caffemodel_and_hdf5(affine, tmp_path):
    affine.save(str(tmp_path / "w.caffemodel"))
    affine.save_hdf5(str(tmp_path / "w.h5"))  # any file name: load_hdf5 says what it is
    for load in ("copy_from", "load_hdf5"):
        other = caffe.Net(str(tmp_path / "affine.prototxt"), caffe.TEST)
        assert not np.array_equal(other.params["ip"][0].data, affine.params["ip"][0].data)
        if load == "copy_from":
            other.copy_from(str(tmp_path / "w.caffemodel"))
        else:
            other.load_hdf5(str(tmp_path / "w.h5"))
        for mine, theirs in zip(affine.params["ip"], other.params["ip"]):
            np.testing.assert_array_equal(mine.data, theirs.data)


def test_share_with_uses_the_other_nets_memory(affine, tmp_path):
    other = caffe.Net(str(tmp_path / "affine.prototxt"), caffe.TEST)
    other.share_with(affine)
    affine.params["ip"][1].data[...] = 7
    np.testing.assert_array_equal(other.params["ip"][1].data, 7)


# ---------------------------------------------------------------- solvers

def solver_file(tmp_path, net_path, extra=""):
    path = tmp_path / "solver.prototxt"
    path.write_text(f'net: "{net_path}" base_lr: 0.1 lr_policy: "fixed" max_iter: 3 display: 0 '
                    f'test_iter: 1 test_interval: 100 snapshot_prefix: "{tmp_path}/snap" {extra}')
    return str(path)


def test_callbacks_run_around_the_gradient_in_order(trainable, tmp_path):
    solver = caffe.SGDSolver(solver_file(tmp_path, trainable))
    events = []

    def on_gradients_ready():
        # The gradient is there, the update has not happened yet.
        events.append(("ready", solver.iter, float(np.abs(solver.net.params["ip"][0].diff).sum()) > 0))

    solver.add_callback(lambda: events.append(("start", solver.iter)), on_gradients_ready)
    solver.step(2)
    assert events == [("start", 0), ("ready", 0, True), ("start", 1), ("ready", 1, True)]


def test_share_weights_and_test_nets(trainable, tmp_path):
    solver = caffe.get_solver(solver_file(tmp_path, trainable))
    assert isinstance(solver, caffe.SGDSolver) and len(solver.test_nets) == 1
    assert solver.test_nets[0].phase == caffe.TEST
    # The test net shares the train net's weights: an update shows in both.
    watcher = caffe.Net(str(trainable), caffe.TEST)
    solver.share_weights(watcher)
    before = solver.net.params["ip"][0].data.copy()
    solver.step(1)
    assert not np.array_equal(before, solver.net.params["ip"][0].data)
    for net in (watcher, solver.test_nets[0]):
        np.testing.assert_array_equal(net.params["ip"][0].data, solver.net.params["ip"][0].data)


def test_solver_apply_update_steps_against_the_gradient(trainable, tmp_path):
    solver = caffe.SGDSolver(solver_file(tmp_path, trainable))
    w = solver.net.params["ip"][0]
    w.data[...] = 0
    w.diff[...] = 1
    solver.apply_update()  # base_lr 0.1, no momentum, no decay
    np.testing.assert_allclose(w.data, -0.1)


def test_snapshot_and_restore(trainable, tmp_path):
    solver = caffe.SGDSolver(solver_file(tmp_path, trainable))
    solver.step(2)
    solver.snapshot()
    weights = solver.net.params["ip"][0].data.copy()
    solver.step(1)
    restored = caffe.SGDSolver(solver_file(tmp_path, trainable))
    restored.restore(str(tmp_path / "snap_iter_2.solverstate"))
    assert restored.iter == 2
    np.testing.assert_array_equal(restored.net.params["ip"][0].data, weights)
