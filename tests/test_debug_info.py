"""debug_info (Caffe's per-layer log lines) and the stop on a non-finite loss.

debug_info: each layer's mean |value| after its forward and backward, in the lines of
Caffe's net.cpp (ForwardDebugInfo, BackwardDebugInfo and the "All net params" line of
Backward), on the train net only on display iterations, on the test nets always.

Non-finite loss: Caffe trains on with `loss = nan`; minicaffe stops with one error that
names the iteration and the first layer (forward order, then backward order) whose
values stopped being finite. The expected layers here come from the nets' construction
or from an independent layer-by-layer re-run, never from the code under test.
"""
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

import minicaffe.log  # noqa: F401  (installs the glog handler whose lines these tests read)
from minicaffe import cli, common
from minicaffe.common import MinicaffeError
from minicaffe.io.idx import read_images, read_labels
from minicaffe.layer import Layer, layer_registry, register_layer
from minicaffe.net import Net
from minicaffe.proto import caffe_pb2
from minicaffe.solvers import SGDSolver
from minicaffe.testing.lenet import lenet_with_input_layer

# Diverging on purpose makes numpy warn about overflow; that is the point, not a problem.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

DATA = Path(__file__).resolve().parents[1] / "data" / "mnist"
GLOG = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ [\w.]+:\d+\] (.*)$")


def log_messages(err: str) -> list[tuple[str, str]]:
    """(severity letter, message) of every glog line in captured stderr."""
    return [m.groups() for m in map(GLOG.match, err.splitlines()) if m]


def debug_lines(err: str) -> list[tuple[str, str]]:
    return [(level, text) for level, text in log_messages(err)
            if text.startswith(("    [Forward]", "    [Backward]"))]


def net_param(text: str) -> caffe_pb2.NetParameter:
    return text_format.Parse(text, caffe_pb2.NetParameter())


def solver_param(net: str, extra: str = "", mode: str = common.CPU) -> caffe_pb2.SolverParameter:
    text = (f"net_param {{ {net} }} base_lr: 0.01 lr_policy: \"fixed\" max_iter: 3 display: 1 "
            f"random_seed: 1 snapshot_after_train: false "
            f"solver_mode: {'GPU' if mode == common.GPU else 'CPU'} {extra}")
    return text_format.Merge(text, caffe_pb2.SolverParameter())


@pytest.fixture(autouse=True)
def keep_engine():
    """Each test leaves the process-wide mode as it found it."""
    old = common.mode()
    yield
    common.set_mode(old)


# ---------------------------------------------------------------- debug_info

# x (2 x 3) -> InnerProduct (W = 0.5, b = 0.25, 2 outputs) -> p; EuclideanLoss(p, y = 0).
TINY = """
name: "tiny" debug_info: true
layer { name: "data" type: "Input" top: "x" top: "y"
        input_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 2 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "p"
        param { name: "w" } param { }
        inner_product_param { num_output: 2 weight_filler { type: "constant" value: 0.5 }
                              bias_filler { type: "constant" value: 0.25 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "y" top: "loss" }
"""
X = [[1, -2, 3], [-4, 5, -6]]

# By hand. Forward: mean|x| = 21/6 = 3.5; the rows of x sum to 2 and -5, so
# p = [[1.25, 1.25], [-2.25, -2.25]], mean|p| = 1.75; loss = (2 * 1.25^2 + 2 * 2.25^2) / (2 * 2)
# = 3.3125. Backward: dp = p / 2, mean|dp| = 0.875; dW[o, k] = 0.625 x[0, k] - 1.125 x[1, k]
# = [5.125, -6.875, 8.625] for both outputs, mean 6.875; db = 0.625 - 1.125 = -0.5.
# All params: L1 = (6 * 0.5 + 2 * 0.25, 2 * 20.625 + 2 * 0.5) = (3.5, 42.25);
# L2 = (sqrt(6 * 0.25 + 2 * 0.0625), sqrt(2 * (5.125^2 + 6.875^2 + 8.625^2) + 2 * 0.25)).
# Caffe names a param blob by its `param { name }` going forward, by its index going back;
# y and x take no gradient, so they have no backward line; the norms are logged as ERROR.
TINY_DEBUG_LINES = [
    ("I", "    [Forward] Layer data, top blob x data: 3.5"),
    ("I", "    [Forward] Layer data, top blob y data: 0"),
    ("I", "    [Forward] Layer ip, top blob p data: 1.75"),
    ("I", "    [Forward] Layer ip, param blob w data: 0.5"),
    ("I", "    [Forward] Layer ip, param blob 1 data: 0.25"),
    ("I", "    [Forward] Layer loss, top blob loss data: 3.3125"),
    ("I", "    [Backward] Layer loss, bottom blob p diff: 0.875"),
    ("I", "    [Backward] Layer ip, param blob 0 diff: 6.875"),
    ("I", "    [Backward] Layer ip, param blob 1 diff: 0.5"),
    ("E", "    [Backward] All net params (data, diff): L1 norm = (3.5, 42.25); "
          f"L2 norm = ({math.sqrt(1.625):.6g}, {math.sqrt(296.34375):.6g})"),
]


def test_debug_info_lines_are_caffes(mode, capsys):
    net = Net(net_param(TINY), caffe_pb2.TRAIN)
    assert net.debug_info  # from the NetParameter's debug_info
    net.blobs["x"].data[...] = X
    net.blobs["y"].data[...] = 0
    capsys.readouterr()
    assert net.forward_backward() == pytest.approx(3.3125)
    assert debug_lines(capsys.readouterr().err) == TINY_DEBUG_LINES

    net.debug_info = False
    net.forward_backward()
    assert debug_lines(capsys.readouterr().err) == []


def test_solver_debug_info_on_display_iterations_and_every_test_pass(capsys):
    # Train net: only when the iteration displays (0 and 2 of 0..2); test net: every pass
    # (tests at 0 and 2). Each pass logs 6 forward lines; a train pass adds 3 + 1 backward.
    solver = SGDSolver(solver_param(TINY.replace("debug_info: true", ""),
                                    "debug_info: true display: 2 test_iter: 1 test_interval: 2"))
    capsys.readouterr()
    solver.solve()
    events = []
    for _, text in log_messages(capsys.readouterr().err):
        if "Testing net" in text:
            events.append("T")
        elif re.match(r"Iteration \d+ \(", text):
            events.append("D")
        elif text.startswith("    [Forward]"):
            events.append("F")
        elif text.startswith("    [Backward]"):
            events.append("B")
    assert "".join(events) == ("T" + "F" * 12 + "B" * 4 + "D") * 2


def test_the_solvers_debug_info_overrides_the_nets(capsys):
    # The NetParameter says debug_info: true, the solver says nothing (false): Caffe's
    # solver sets both the train and the test nets' flag from its own.
    solver = SGDSolver(solver_param(TINY, "test_iter: 1 test_interval: 1"))
    capsys.readouterr()
    solver.step(2)
    assert not solver.test_nets[0].debug_info
    assert debug_lines(capsys.readouterr().err) == []


# ---------------------------------------------------------------- non-finite loss

def first_non_finite_by_rerun(net: Net):
    """The independent answer: run the net one layer at a time and look after each."""
    for i, name in enumerate(net.layer_names):
        if any(not np.isfinite(blob.cpu_data()).all() for blob in net.layers[i].blobs):
            return name, "param"
        net.forward_from_to(i, i)
        if any(not np.isfinite(blob.cpu_data()).all() for blob in net.layer_records[i].top_vec):
            return name, "top"
    return None


def test_lenet_diverging_on_mnist_digits_stops_at_the_first_bad_layer(capsys):
    """LeNet (examples/mnist, data from an Input layer) on 8 real digits at base_lr 10."""
    images = read_images(DATA / "t10k-images-idx3-ubyte.gz")[:8]
    labels = read_labels(DATA / "t10k-labels-idx1-ubyte.gz")[:8]
    param = solver_param("", "base_lr: 10 momentum: 0.9 max_iter: 50", common.CPU)
    param.net_param.CopyFrom(lenet_with_input_layer(8))
    common.set_mode(common.CPU)  # the numbers below are numpy's; keep_engine restores the mode
    solver = SGDSolver(param)
    solver.net.blobs["data"].data[...] = images.reshape(8, 1, 28, 28) / 256.0
    solver.net.blobs["label"].data[...] = labels
    capsys.readouterr()
    with pytest.raises(MinicaffeError) as error:
        solver.step(50)
    message = str(error.value)

    # Every iteration before the stop logged a finite loss; the stop names the next one.
    shown = [float(v) for v in re.findall(r"Iteration \d+ \(.*\), loss = (\S+)", capsys.readouterr().err)]
    assert shown and all(math.isfinite(v) for v in shown)
    assert message.startswith(f"iteration {len(shown)}: loss is nan; ")
    assert solver.iter == len(shown)  # no update after the bad pass

    # The weights are as the bad pass saw them and the input is fixed: re-running layer
    # by layer finds the culprit. ip1 is rewritten in place by relu1, so this also checks
    # that an in-place chain is traced back to the layer that broke it.
    name, kind = first_non_finite_by_rerun(solver.net)
    assert kind == "top"
    layer = solver.net.layer_dict[name]
    top = solver.net.top_names[name][0]
    assert (f"the first non-finite value appeared in the forward pass at layer {name!r} "
            f"({layer.type}), top blob {top!r}") in message
    assert "without writing a snapshot" in message


def test_weights_an_update_blew_up_are_named(mode):
    # base_lr 3e38 times a gradient above 1.2 overflows float32: the first update makes
    # the weights infinite, so iteration 1's loss is not finite because of them.
    param = solver_param(TINY.replace("debug_info: true", ""), "base_lr: 3e38", mode)
    solver = SGDSolver(param)
    solver.net.blobs["x"].data[...] = X
    solver.net.blobs["y"].data[...] = 10
    with pytest.raises(MinicaffeError) as error:
        solver.step(3)
    assert not np.isfinite(solver.net.params["ip"][0].data).all()
    assert str(error.value).startswith("iteration 1: loss is nan; the weights are not finite, "
                                       "starting with param blob 0 of layer 'ip' (InnerProduct)")


CHAIN = """
name: "chain"
layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 2 dim: 2 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "x" top: "ip1"
        inner_product_param { num_output: 2 weight_filler { type: "constant" value: WEIGHT } } }
RELU
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        inner_product_param { num_output: 2 weight_filler { type: "constant" value: 1 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip2" bottom: "x" top: "loss" }
"""


def chain_solver(mode, weight: str, relu: str = "", x: float = 10.0) -> SGDSolver:
    solver = SGDSolver(solver_param(CHAIN.replace("WEIGHT", weight).replace("RELU", relu), mode=mode))
    solver.net.blobs["x"].data[...] = x
    return solver


def test_the_first_layer_to_overflow_is_named_not_the_ones_after(mode):
    # ip1: 2 * 10 * 3e38 overflows to inf; ip2 and the loss turn that into inf and NaN.
    solver = chain_solver(mode, "3e38")
    with pytest.raises(MinicaffeError, match=r"^iteration 0: loss is (inf|nan); the first non-finite "
                       r"value appeared in the forward pass at layer 'ip1' \(InnerProduct\), "
                       r"top blob 'ip1'\. Training stopped without writing a snapshot\.$"):
        solver.step(1)
    assert solver.iter == 0


def test_an_in_place_layer_that_overflows_is_named_not_its_producer(mode):
    # ip1 gives -2e10 (finite); relu1, in place on ip1, multiplies it by 1e30: -inf. After
    # the pass the blob 'ip1' is non-finite; only relu1 made it so.
    relu = ('layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" '
            'relu_param { negative_slope: 1e30 } }')
    solver = chain_solver(mode, "-1e9", relu)
    with pytest.raises(MinicaffeError, match=r"at layer 'relu1' \(ReLU\), top blob 'ip1'\."):
        solver.step(1)


def test_an_in_place_culprit_does_not_hide_an_earlier_layer(mode):
    # relu1 breaks 'ip1' in place, as above, but after ipx, which overflows on its own
    # (10 * 3e38): ipx is the first layer whose top became non-finite.
    text = """
    name: "two"
    layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 2 dim: 2 } } }
    layer { name: "ip1" type: "InnerProduct" bottom: "x" top: "ip1"
            inner_product_param { num_output: 2 weight_filler { type: "constant" value: -1e9 } } }
    layer { name: "ipx" type: "InnerProduct" bottom: "x" top: "ipx"
            inner_product_param { num_output: 2 weight_filler { type: "constant" value: 3e38 } } }
    layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" relu_param { negative_slope: 1e30 } }
    layer { name: "sum" type: "Eltwise" bottom: "ip1" bottom: "ipx" top: "sum" }
    layer { name: "loss" type: "EuclideanLoss" bottom: "sum" bottom: "x" top: "loss" }
    """
    solver = SGDSolver(solver_param(text, mode=mode))
    solver.net.blobs["x"].data[...] = 10
    with pytest.raises(MinicaffeError, match=r"at layer 'ipx' \(InnerProduct\), top blob 'ipx'\."):
        solver.step(1)


OVERFLOWING_SUM = """
name: "sum"
layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "p" loss_weight: LOSS_WEIGHT
        inner_product_param { num_output: 2 weight_filler { type: "constant" value: 1.5e28 }
                              bias_term: false } }
"""


@pytest.mark.parametrize("loss_weight, expected", [
    # The loss is loss_weight * sum(p): each p is 2 * 1e10 * 1.5e28 = 3e38, finite, but
    # their float32 sum is not. Backward, dW = loss_weight * x: 1e40 overflows, 1e10 does not.
    ("1e30", "every top is finite; the first non-finite value appeared in the backward pass "
             "at layer 'ip' (InnerProduct), param blob 0 diff"),
    ("1", "every top, diff and weight is finite, so the weighted sum of the loss blobs overflowed"),
])
def test_a_loss_that_overflows_from_finite_tops(mode, loss_weight, expected):
    solver = SGDSolver(solver_param(OVERFLOWING_SUM.replace("LOSS_WEIGHT", loss_weight), mode=mode))
    solver.net.blobs["x"].data[...] = 1e10
    with pytest.raises(MinicaffeError) as error:
        solver.step(1)
    assert str(error.value) == (f"iteration 0: loss is inf; {expected}. "
                                "Training stopped without writing a snapshot.")


class NaNOnFirstPassLayer(Layer):
    """Passes its bottom through, except that its first forward writes NaN: one bad batch
    in the first of iter_size passes, followed by a good one."""

    type = "DebugInfoTestNaNOnFirstPass"
    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def layer_setup(self, bottom, top):
        self.passes = 0

    def reshape(self, bottom, top):
        top[0].reshape_like(bottom[0])

    def forward_cpu(self, bottom, top):
        top[0].mutable_cpu_data()[...] = np.nan if self.passes == 0 else bottom[0].cpu_data()
        self.passes += 1

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].mutable_cpu_diff()[...] = top[0].cpu_diff()

    forward_gpu, backward_gpu = forward_cpu, backward_cpu


@pytest.fixture
def nan_once_layer():
    """Registered for one test only: the registry is global (test_layout checks it)."""
    from minicaffe import layer as layer_module
    if NaNOnFirstPassLayer.type not in layer_registry():
        register_layer(NaNOnFirstPassLayer)
    yield
    layer_module._REGISTRY.pop(NaNOnFirstPassLayer.type, None)


def test_with_iter_size_the_bad_pass_is_diagnosed_not_the_last_one(nan_once_layer):
    glitch = ('layer { name: "glitch" type: "DebugInfoTestNaNOnFirstPass" bottom: "ip1" '
              'top: "bad" } ')
    net = CHAIN.replace("WEIGHT", "0.1").replace("RELU", glitch).replace('bottom: "ip1" top: "ip2"',
                                                                        'bottom: "bad" top: "ip2"')
    solver = SGDSolver(solver_param(net, "iter_size: 2"))
    solver.net.blobs["x"].data[...] = 1
    with pytest.raises(MinicaffeError, match=r"^iteration 0: loss is nan; the first non-finite value "
                       r"appeared in the forward pass at layer 'glitch' "):
        solver.step(1)


def test_cli_train_stops_with_one_line_and_no_snapshot(tmp_path, monkeypatch, capsys):
    # The CLI cannot fill the Input layer, so x stays 0 and ip1 gives its bias, 3e38 (finite);
    # ip2 adds two of them: inf.
    monkeypatch.chdir(tmp_path)
    net = CHAIN.replace("RELU", "").replace(
        'weight_filler { type: "constant" value: WEIGHT }',
        'weight_filler { type: "constant" value: 1 } bias_filler { type: "constant" value: 3e38 }')
    (tmp_path / "net.prototxt").write_text(net)
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt" base_lr: 0.01 lr_policy: "fixed" max_iter: 10 display: 1 '
        'snapshot: 1 snapshot_prefix: "snaps/chain" solver_mode: CPU\n')
    (tmp_path / "snaps").mkdir()
    code = cli.main(["train", "--solver", "solver.prototxt"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    message = err[err.index("minicaffe: error: "):].rstrip("\n")
    assert "\n" not in message
    assert message.startswith("minicaffe: error: iteration 0: loss is ")
    assert "at layer 'ip2' (InnerProduct), top blob 'ip2'" in message
    assert os.listdir("snaps") == []  # no snapshot of the diverged weights, final or otherwise
