"""Magnitude pruning (minicaffe/pruning.py, `minicaffe prune`, `train --prune-mask`, summary).

Known weights give hand-counted masks (per layer, global, ties, rounding); the mask file
round-trips; pruned weights stay exactly zero through SGD and Adam updates with momentum
and weight decay on both engines, on real MNIST digits; the CLI verbs work end to end
and fail in one clear paragraph.
"""
import os

import h5py
import numpy as np
import pytest
from google.protobuf import text_format

from minicaffe import cli, common, pruning
from minicaffe.common import MinicaffeError
from minicaffe.io.idx import read_images, read_labels
from minicaffe.io.mnist import convert_mnist_data
from minicaffe.net import TEST, Net
from minicaffe.proto import caffe_pb2
from minicaffe.solvers import get_solver
from minicaffe.syncedmem import recording_transfers
from minicaffe.tools import summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST = os.path.join(ROOT, "data", "mnist")

# ---------------------------------------------------------------- known weights, by hand

TWO_LAYERS = """
name: "two"
layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 1 dim: 5 } } }
layer { name: "a" type: "InnerProduct" bottom: "x" top: "ya" inner_product_param { num_output: 2 } }
layer { name: "b/ip" type: "InnerProduct" bottom: "ya" top: "yb" inner_product_param { num_output: 3 } }
"""
# |a| in flat order: .5 .1 .3 .05 .9 | .2 .05 .7 .6 .01   (two ties at 0.05)
A = np.array([[0.5, -0.1, 0.3, -0.05, 0.9], [-0.2, 0.05, 0.7, -0.6, 0.01]], np.float32)
# |b|: 1 2 .5 .25 3 .1   (0.1 ties with a's -0.1, 0.5 with a's 0.5)
B = np.array([[1, -2], [0.5, -0.25], [3, 0.1]], np.float32)


@pytest.fixture
def two():
    net = Net(text_format.Parse(TWO_LAYERS, caffe_pb2.NetParameter()), TEST)
    net.layer_dict["a"].blobs[0].data[...] = A
    net.layer_dict["a"].blobs[1].data[...] = [0.001, -0.002]  # tiny biases: never pruned by default
    net.layer_dict["b/ip"].blobs[0].data[...] = B
    net.layer_dict["b/ip"].blobs[1].data[...] = [0.0, 4.0, -0.003]
    return net


def pruned_positions(mask) -> list[int]:
    return sorted(np.flatnonzero(~np.asarray(mask)).tolist())


def test_per_layer_masks_prune_each_layers_smallest_weights(two):
    masks = pruning.compute_masks(two, 0.3)
    assert sorted(masks) == ["a/0", "b/ip/0"]  # weights only: no bias masks
    # a: 10 weights, 3 go: .01 (9) and the two 0.05s (3, 6). b: 6 weights, round(1.8) = 2 go: .1, .25.
    assert pruned_positions(masks["a/0"]) == [3, 6, 9]
    assert pruned_positions(masks["b/ip/0"]) == [3, 5]
    assert masks["a/0"].shape == A.shape and masks["a/0"].dtype == bool


def test_ties_are_pruned_in_flat_index_order(two):
    # 2 of a's 10: .01 (9), then one of the two 0.05s: the first stored (3), not 6.
    assert pruned_positions(pruning.compute_masks(two, 0.2)["a/0"]) == [3, 9]
    assert pruned_positions(pruning.magnitude_mask(np.full(8, -0.5), 0.5)) == [0, 1, 2, 3]
    # Zeros already there are the smallest of all.
    assert pruned_positions(pruning.magnitude_mask(np.array([3.0, 0.0, -1.0, 0.0]), 0.5)) == [1, 3]


def test_the_count_is_rounded_to_the_nearest_halves_up():
    assert pruning.pruned_count(10, 0.25) == 3        # 2.5 -> 3
    assert pruning.pruned_count(100, 0.29) == 29      # 0.29 * 100 = 28.999999999999996
    assert pruning.pruned_count(431_080, 0.9) == 387_972
    assert pruning.pruned_count(7, 0.0) == 0
    assert int((~pruning.magnitude_mask(np.arange(1, 11), 0.25)).sum()) == 3


def test_a_global_threshold_prunes_the_smallest_of_all_layers(two):
    # 16 weights, 8 go: .01 .05 .05 .1(a) .1(b) .2 .25 .3 -> a loses 6 of 10, b 2 of 6.
    masks = pruning.compute_masks(two, 0.5, scope="global")
    assert pruned_positions(masks["a/0"]) == [1, 2, 3, 5, 6, 9]
    assert pruned_positions(masks["b/ip/0"]) == [3, 5]
    # 9 go: the ninth is the first 0.5, a's (earlier in the net), not b's.
    masks = pruning.compute_masks(two, 9 / 16, scope="global")
    assert pruned_positions(masks["a/0"]) == [0, 1, 2, 3, 5, 6, 9]
    assert pruned_positions(masks["b/ip/0"]) == [3, 5]


def test_layers_and_biases_are_chosen_by_name_and_flag(two):
    assert sorted(pruning.compute_masks(two, 0.5, layers=["b/ip"])) == ["b/ip/0"]
    masks = pruning.compute_masks(two, 0.5, layers=["b/ip"], include_biases=True)
    assert sorted(masks) == ["b/ip/0", "b/ip/1"]
    assert pruned_positions(masks["b/ip/1"]) == [0, 2]  # 0 and -0.003 of (0, 4, -0.003): round(1.5) = 2


def test_prune_zeroes_exactly_the_masked_weights_and_reports_thresholds(two):
    masks = pruning.compute_masks(two, 0.3)
    rows = {r["layer"]: r for r in pruning.report(two, masks)}
    assert rows["a"]["pruned"] == 3 and rows["a"]["threshold"] == pytest.approx(0.05)
    assert rows["b/ip"]["threshold"] == pytest.approx(0.25)
    pruning.apply_masks(two, masks)
    a = two.layer_dict["a"].blobs[0].data
    assert np.count_nonzero(a) == 7 and pruning.sparsity_of(a) == pytest.approx(0.3)
    np.testing.assert_array_equal(a[masks["a/0"]], A[masks["a/0"]])  # the kept ones untouched
    np.testing.assert_array_equal(two.layer_dict["a"].blobs[1].data, np.float32([0.001, -0.002]))


@pytest.mark.parametrize("sparsity, fragment", [
    (1.0, "in [0, 1)"), (-0.1, "in [0, 1)"), (90, "give 0.9"), ("abc", "a number"), (float("nan"), "[0, 1)")])
def test_a_bad_sparsity_is_a_clear_error(two, sparsity, fragment):
    with pytest.raises(MinicaffeError, match="sparsity") as error:
        pruning.compute_masks(two, sparsity)
    assert fragment in str(error.value)


def test_unknown_layers_and_layers_without_weights_are_named(two):
    with pytest.raises(MinicaffeError, match=r"no layer 'c'.*a, b/ip"):
        pruning.compute_masks(two, 0.5, layers=["c"])
    with pytest.raises(MinicaffeError, match="layer 'data' .*has no parameters"):
        pruning.compute_masks(two, 0.5, layers=["data"])
    with pytest.raises(MinicaffeError, match="scope"):
        pruning.compute_masks(two, 0.5, scope="net")


# ---------------------------------------------------------------- the mask file

def test_mask_file_round_trip(two, tmp_path):
    masks = pruning.compute_masks(two, 0.5, scope="global", include_biases=True)
    path = tmp_path / "two.mask.h5"
    pruning.save_masks(path, masks, 0.5, "global")
    assert sorted(os.listdir(tmp_path)) == ["two.mask.h5"]  # no temporary file left behind
    loaded = pruning.load_masks(path)
    assert sorted(loaded) == sorted(masks) == ["a/0", "a/1", "b/ip/0", "b/ip/1"]
    for key in masks:
        np.testing.assert_array_equal(loaded[key], masks[key])
        assert loaded[key].dtype == bool
    with h5py.File(path, "r") as f:  # the documented layout
        assert f.attrs["format"] == "minicaffe pruning mask" and f.attrs["version"] == 1
        assert f.attrs["sparsity"] == 0.5 and f.attrs["scope"] == "global"
        assert f["mask/b/ip/0"].dtype == np.uint8 and f["mask/b/ip/0"].shape == (3, 2)
        assert set(np.unique(f["mask/a/0"][()])) == {0, 1}


def test_masks_that_do_not_fit_the_net_are_refused(two, tmp_path):
    with pytest.raises(MinicaffeError, match=r"mask 'a/0' has shape \(5, 2\).*\(2, 5\)"):
        pruning.apply_masks(two, {"a/0": np.ones((5, 2), bool)}, "m.h5")
    with pytest.raises(MinicaffeError, match="m.h5: mask 'ip9/0' is for layer 'ip9'.*a, b/ip"):
        pruning.check_masks(two, {"ip9/0": np.ones(3, bool)}, "m.h5")
    with pytest.raises(MinicaffeError, match="param 2 of layer 'a'"):
        pruning.check_masks(two, {"a/2": np.ones(2, bool)})
    with h5py.File(tmp_path / "weights.h5", "w") as f:
        f.create_dataset("data/a/0", data=A)
    with pytest.raises(MinicaffeError, match="not a pruning mask file"):
        pruning.load_masks(tmp_path / "weights.h5")
    with pytest.raises(MinicaffeError, match="does not exist"):
        pruning.load_masks(tmp_path / "missing.mask.h5")
    pruning.save_masks(tmp_path / "bad.mask.h5", {"a/0": np.ones((2, 5), bool)})
    with h5py.File(tmp_path / "bad.mask.h5", "r+") as f:
        f["mask/a/0"][0, 0] = 2
    with pytest.raises(MinicaffeError, match="only 0"):
        pruning.load_masks(tmp_path / "bad.mask.h5")


# ---------------------------------------------------------------- fine-tuning keeps zeros at zero

# conv: 4 maps of 12 x 12 (stride 2), so ip has 10 x 576 weights.
LAYERS = """
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        param { lr_mult: 1 } param { lr_mult: 2 }
        convolution_param { num_output: 4 kernel_size: 5 stride: 2
                            weight_filler { type: "xavier" } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
        inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""
SMALL_NET = """
name: "small"
layer { name: "digits" type: "MemoryData" top: "data" top: "label"
        memory_data_param { batch_size: 16 channels: 1 height: 28 width: 28 } }
""" + LAYERS
SOLVERS = {
    "SGD": 'type: "SGD" base_lr: 0.05 momentum: 0.9 weight_decay: 0.01',
    "Adam": 'type: "Adam" base_lr: 0.01 momentum: 0.9 momentum2: 0.999 weight_decay: 0.01',
    "SGD-L1": 'type: "SGD" base_lr: 0.05 momentum: 0.9 weight_decay: 0.01 regularization_type: "L1"',
}


@pytest.fixture(scope="module")
def digits():
    images = read_images(os.path.join(MNIST, "train-10k-images-idx3-ubyte.gz"))[:64]
    labels = read_labels(os.path.join(MNIST, "train-10k-labels-idx1-ubyte.gz"))[:64]
    return (np.ascontiguousarray(images[:, None].astype(np.float32) / 256), labels.astype(np.float32))


def small_solver(kind: str, digits):
    param = text_format.Parse(f'{SOLVERS[kind]} lr_policy: "fixed" max_iter: 100 display: 0 '
                              "random_seed: 5 snapshot_after_train: false", caffe_pb2.SolverParameter())
    param.net_param.CopyFrom(text_format.Parse(SMALL_NET, caffe_pb2.NetParameter()))
    solver = get_solver(param)
    solver.net.set_input_arrays(*digits)
    return solver


@pytest.mark.parametrize("kind", sorted(SOLVERS))
def test_pruned_weights_stay_exactly_zero_while_training(mode, digits, kind):
    solver = small_solver(kind, digits)
    solver.step(2)  # some momentum / moments before pruning, as in a trained net
    masks = pruning.compute_masks(solver.net, 0.7)
    pruning.attach(solver, masks, "test masks")
    blobs = {key: pruning.parameter(solver.net, key) for key in masks}
    for key, blob in blobs.items():
        assert not np.any(blob.cpu_data()[~masks[key]]), f"{key}: attach prunes at once"
    before = {key: blob.cpu_data().copy() for key, blob in blobs.items()}
    for _ in range(4):
        solver.step(1)
        for key, blob in blobs.items():
            w = blob.cpu_data()
            assert np.count_nonzero(w[~masks[key]]) == 0, f"{key}: a pruned weight moved ({mode}, {kind})"
    for key, blob in blobs.items():  # the kept weights did learn
        assert np.abs(blob.cpu_data() - before[key])[masks[key]].max() > 1e-5, key
    # Without the mask the same update moves pruned weights: the history still pushes them.
    del solver.apply_update  # the class's own update again
    solver.step(1)
    assert any(np.count_nonzero(blob.cpu_data()[~masks[key]]) for key, blob in blobs.items())


@pytest.mark.opencl
def test_on_the_device_the_mask_moves_no_weights_to_the_host(gpu_only, digits):
    solver = small_solver("SGD", digits)
    pruning.attach(solver, pruning.compute_masks(solver.net, 0.5), "test masks")
    solver.step(1)  # everything on the device now
    params = {id(b.data_mem) for b in solver.net.learnable_params}
    with recording_transfers() as copies:
        solver.step(2)
    assert not [d for d, memory in copies if id(memory) in params]


# ---------------------------------------------------------------- the command line

DATA_NET = """
name: "small"
layer { name: "mnist" type: "Data" top: "data" top: "label" transform_param { scale: 0.00390625 }
        data_param { source: "digits_lmdb" batch_size: 16 backend: LMDB } }
""" + LAYERS


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    convert_mnist_data(os.path.join(MNIST, "train-10k-images-idx3-ubyte.gz"),
                       os.path.join(MNIST, "train-10k-labels-idx1-ubyte.gz"), "digits_lmdb",
                       limit=64, progress=False)
    (tmp_path / "net.prototxt").write_text(DATA_NET)
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt" base_lr: 0.05 momentum: 0.9 weight_decay: 0.005 lr_policy: "fixed" '
        'display: 0 max_iter: 3 snapshot: 0 snapshot_prefix: "tuned" solver_mode: CPU random_seed: 2\n')
    common.set_random_seed(1)
    Net("net.prototxt", TEST).save("dense.caffemodel")
    old = common.mode()
    yield tmp_path
    common.set_mode(old)


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def weights_of(path):
    net = Net("net.prototxt", TEST)
    net.copy_trained_layers_from(path)
    return {name: [b.data.copy() for b in blobs] for name, blobs in net.params.items()}


def test_prune_then_finetune_with_the_mask_then_summary(workdir, capsys):
    code, out, err = run(capsys, "prune", "--model", "net.prototxt", "--weights", "dense.caffemodel",
                         "--sparsity", "0.8", "--output", "pruned.caffemodel")
    assert code == 0, err
    assert "conv" in out and "80.00%" in out and "total" in out
    masks = pruning.load_masks("pruned.mask.h5")  # the default name beside the output
    assert sorted(masks) == ["conv/0", "ip/0"]
    dense, pruned = weights_of("dense.caffemodel"), weights_of("pruned.caffemodel")
    for layer in ("conv", "ip"):
        w = pruned[layer][0]
        assert pruning.sparsity_of(w) == pytest.approx(0.8, abs=0.5 / w.size)
        np.testing.assert_array_equal(w[masks[f"{layer}/0"]], dense[layer][0][masks[f"{layer}/0"]])
        np.testing.assert_array_equal(pruned[layer][1], dense[layer][1])  # biases kept

    code, _, err = run(capsys, "train", "--solver", "solver.prototxt", "--weights", "pruned.caffemodel",
                       "--prune-mask", "pruned.mask.h5")
    assert code == 0, err
    assert "Pruning masks from pruned.mask.h5" in err
    tuned = weights_of("tuned_iter_3.caffemodel")
    for layer in ("conv", "ip"):
        mask = masks[f"{layer}/0"]
        assert np.count_nonzero(tuned[layer][0][~mask]) == 0
        assert not np.array_equal(tuned[layer][0][mask], pruned[layer][0][mask])  # it trained

    rows = {r["layer"]: r for r in summary.summarize("net.prototxt", "TEST", weights="tuned_iter_3.caffemodel")["rows"]}
    assert rows["conv"]["sparsity"] == pytest.approx(0.8) and rows["ip"]["sparsity"] == pytest.approx(0.8)
    assert rows["mnist"]["sparsity"] is None
    code, out, _ = run(capsys, "summary", "--model", "net.prototxt", "--phase", "TEST",
                       "--weights", "tuned_iter_3.caffemodel")
    assert code == 0
    header, conv = out.splitlines()[1], next(line for line in out.splitlines() if line.startswith("conv"))
    assert header.split()[-1] == "sparsity" and conv.split()[-1] == "80.0%"


def test_prune_global_with_layers_and_a_mask_name(workdir, capsys):
    code, out, err = run(capsys, "prune", "-model", "net.prototxt", "-weights", "dense.caffemodel",
                         "-sparsity", "0.5", "--layers", "ip", "--global", "--output", "p.caffemodel.h5",
                         "--mask", "ip.mask.h5")
    assert code == 0, err
    assert "one global threshold" in out
    masks = pruning.load_masks("ip.mask.h5")
    assert list(masks) == ["ip/0"] and int((~masks["ip/0"]).sum()) == 10 * 576 // 2
    pruned = weights_of("p.caffemodel.h5")
    assert pruning.sparsity_of(pruned["ip"][0]) == 0.5 and pruning.sparsity_of(pruned["conv"][0]) == 0


@pytest.mark.parametrize("argv, fragments", [
    (["--sparsity", "90"], ["sparsity must be a fraction in [0, 1)", "give 0.9"]),
    (["--sparsity", "0.5", "--layers", "conv,nope"], ["no layer 'nope'", "conv, ip"]),
    (["--sparsity", "0.5", "--layers", "relu"], ["layer 'relu'", "has no parameters"]),
    (["--sparsity", "0.5", "--mask", "p.caffemodel"], ["same file"]),
    ([], ["needs --sparsity"]),
])
def test_prune_errors_are_one_paragraph(workdir, capsys, argv, fragments):
    code, _, err = run(capsys, "prune", "--model", "net.prototxt", "--weights", "dense.caffemodel",
                       "--output", "p.caffemodel", *argv)
    assert code == 1 and "Traceback" not in err
    message = err[err.index("minicaffe: error: "):]
    for fragment in fragments:
        assert fragment in message
    assert not os.path.exists("p.caffemodel")


def test_train_refuses_a_mask_of_another_net(workdir, capsys):
    pruning.save_masks("other.mask.h5", {"ip/0": np.ones((10, 99), bool)})
    code, _, err = run(capsys, "train", "--solver", "solver.prototxt", "--prune-mask", "other.mask.h5")
    assert code == 1 and "Traceback" not in err
    assert "other.mask.h5: mask 'ip/0' has shape (10, 99)" in err and "(10, 576)" in err
    code, _, err = run(capsys, "train", "--solver", "solver.prototxt", "--prune-mask", "none.mask.h5")
    assert code == 1 and "none.mask.h5" in err and "does not exist" in err
