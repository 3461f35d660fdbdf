"""The `minicaffe` command: Caffe's verbs and flags, and errors as one paragraph, exit 1."""
import os

import numpy as np
import pytest

from minicaffe import cli, common, protoio
from tests.test_solver import GLOG, SequenceDataLayer, net_text, registered_test_layers

SOLVER = ('net: "net.prototxt" test_iter: 2 test_interval: 3 base_lr: 0.05 momentum: 0.9 '
          'lr_policy: "step" gamma: 0.5 stepsize: 2 display: 2 max_iter: 4 snapshot: 2 '
          'snapshot_prefix: "snaps/tiny" solver_mode: CPU random_seed: 3\n')

@pytest.fixture(scope="module", autouse=True)
def stand_in_layers():
    with registered_test_layers():
        yield


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(net_text(data=SequenceDataLayer.type))
    (tmp_path / "solver.prototxt").write_text(SOLVER)
    (tmp_path / "snaps").mkdir()
    old = common.mode()
    yield tmp_path
    common.set_mode(old)  # the CLI sets the process-wide mode, as caffe does


def run(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.err


def assert_one_paragraph_error(code, err, *fragments):
    """Log lines (glog format) may come first; then one paragraph, and no traceback."""
    assert code == 1
    assert "Traceback" not in err
    message = err[err.index("minicaffe: error: "):].strip()
    assert not any(GLOG.match(line) for line in message.splitlines()) and "\n\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_train_writes_snapshots_and_logs(workdir, capsys):
    code, err = run(capsys, "train", "--solver", "solver.prototxt")
    assert code == 0
    assert sorted(os.listdir("snaps")) == ["tiny_iter_2.caffemodel", "tiny_iter_2.solverstate",
                                           "tiny_iter_4.caffemodel", "tiny_iter_4.solverstate"]
    assert "Use CPU." in err and "Solving tiny" in err and "Iteration 2, lr = 0.025" in err
    assert err.rstrip().endswith("Optimization Done.")


def test_caffe_style_single_dash_flags(workdir, capsys):
    code, _ = run(capsys, "train", "-solver", "solver.prototxt", "-sigint_effect=none")
    assert code == 0 and os.path.exists("snaps/tiny_iter_4.caffemodel")


def test_resume_from_snapshot_equals_the_straight_run(workdir, capsys):
    assert run(capsys, "train", "--solver", "solver.prototxt")[0] == 0
    straight = protoio.read_net_param("snaps/tiny_iter_4.caffemodel")
    os.remove("snaps/tiny_iter_4.caffemodel")
    code, err = run(capsys, "train", "--solver", "solver.prototxt", "--snapshot", "snaps/tiny_iter_2.solverstate")
    assert code == 0 and "Resuming from snaps/tiny_iter_2.solverstate" in err
    assert "Iteration 0," not in err  # it starts at iteration 2
    resumed = protoio.read_net_param("snaps/tiny_iter_4.caffemodel")
    for a, b in zip(straight.layer, resumed.layer):
        for pa, pb in zip(a.blobs, b.blobs):
            np.testing.assert_array_equal(pa.data, pb.data)


def test_finetune_from_weights(workdir, capsys):
    assert run(capsys, "train", "--solver", "solver.prototxt")[0] == 0
    code, err = run(capsys, "train", "--solver", "solver.prototxt", "--weights", "snaps/tiny_iter_4.caffemodel")
    assert code == 0 and "Finetuning from snaps/tiny_iter_4.caffemodel" in err


def test_solver_weights_field_and_the_flags_that_replace_it(workdir, capsys):
    # Caffe: the solver's `weights` are loaded into every net; --weights replaces them and
    # --snapshot clears them (the snapshot names its own weights).
    assert run(capsys, "train", "--solver", "solver.prototxt")[0] == 0
    os.rename("snaps/tiny_iter_2.caffemodel", "snaps/two.caffemodel")
    os.rename("snaps/tiny_iter_4.caffemodel", "snaps/four.caffemodel")
    with open("solver.prototxt", "a") as f:
        f.write('weights: "snaps/two.caffemodel"\n')
    code, err = run(capsys, "train", "--solver", "solver.prototxt")
    assert code == 0 and "Finetuning from snaps/two.caffemodel" in err
    code, err = run(capsys, "train", "--solver", "solver.prototxt", "--weights", "snaps/four.caffemodel")
    assert code == 0 and "Finetuning from snaps/four.caffemodel" in err and "two.caffemodel" not in err
    code, err = run(capsys, "train", "--solver", "solver.prototxt", "--snapshot", "snaps/tiny_iter_2.solverstate")
    assert code == 0 and "Finetuning from" not in err


def test_test_verb_refuses_weights_that_fit_no_layer(workdir, capsys):
    assert run(capsys, "train", "--solver", "solver.prototxt")[0] == 0
    renamed = protoio.read_net_param("snaps/tiny_iter_4.caffemodel")
    for layer in renamed.layer:
        layer.name = "renamed_" + layer.name
    protoio.write_binary("renamed.caffemodel", renamed)
    code, err = run(capsys, "test", "--model", "net.prototxt", "--weights", "renamed.caffemodel")
    assert_one_paragraph_error(code, err, "renamed.caffemodel: no layer of net", "got weights")


def test_test_verb_prints_batches_and_means(workdir, capsys):
    assert run(capsys, "train", "--solver", "solver.prototxt")[0] == 0
    code, err = run(capsys, "test", "--model", "net.prototxt", "--weights", "snaps/tiny_iter_4.caffemodel",
                    "--iterations", "3")
    assert code == 0
    batches = [float(line.rsplit("= ", 1)[1]) for line in err.splitlines() if "] Batch " in line]
    assert len(batches) == 3
    final = [line for line in err.splitlines() if "] loss = " in line]
    assert len(final) == 1 and final[0].endswith(" loss)")  # "loss = m (* 1 = m loss)"
    mean = float(final[0].split("] loss = ")[1].split()[0])
    assert mean == pytest.approx(np.mean(batches), rel=1e-4)


@pytest.mark.parametrize("argv, fragments", [
    (["train", "--solver", "nope.prototxt"], ["nope.prototxt: no such file"]),
    (["train"], ["Need a solver definition"]),
    (["train", "--solver", "solver.prototxt", "--snapshot", "a.solverstate", "--weights", "b.caffemodel"],
     ["not both"]),
    (["test", "--model", "net.prototxt"], ["Need model weights"]),
    (["test", "--model", "net.prototxt", "--weights", "missing.caffemodel"], ["missing.caffemodel: no such file"]),
    (["train", "--solver", "solver.prototxt", "--gpu", "x"], ["--gpu takes device ids"]),
])
def test_user_errors_are_one_paragraph(workdir, capsys, argv, fragments):
    assert_one_paragraph_error(*run(capsys, *argv), *fragments)


def test_malformed_prototxt_names_file_line_and_column(workdir, capsys):
    (workdir / "bad.prototxt").write_text('net: "net.prototxt"\nbase_lr: 0.1\nlr_policy "fixed"\n')
    code, err = run(capsys, "train", "--solver", "bad.prototxt")
    assert_one_paragraph_error(code, err, "bad.prototxt:3:")
    (workdir / "solver2.prototxt").write_text(SOLVER.replace("net.prototxt", "broken.prototxt"))
    (workdir / "broken.prototxt").write_text('name: "x"\nlayer { name: "a" type: "Input"\n')
    code, err = run(capsys, "train", "--solver", "solver2.prototxt")
    assert_one_paragraph_error(code, err, "broken.prototxt:", "solver2.prototxt")


def test_gpu_flag_without_opencl_is_an_error(workdir, capsys, monkeypatch):
    """--gpu asks for the device: no device is an error, not a silent fallback."""
    import minicaffe.engine as engine
    monkeypatch.setattr(engine, "opencl_problem", lambda: "no OpenCL platform found")
    for verb in (["train", "--solver", "solver.prototxt"], ["time", "--model", "net.prototxt"]):
        code, err = run(capsys, *verb, "--gpu", "0")
        assert_one_paragraph_error(code, err, "GPU device 0 was asked for", "no OpenCL platform found")
    assert not os.path.exists("snaps/tiny_iter_2.caffemodel")


def test_solver_mode_gpu_without_opencl_warns_and_trains_on_numpy(workdir, capsys, monkeypatch):
    """Caffe's example solvers say solver_mode: GPU; without a device they still train."""
    import minicaffe.engine as engine
    monkeypatch.setattr(engine, "opencl_problem", lambda: "no OpenCL platform found")
    (workdir / "solver.prototxt").write_text(SOLVER.replace("solver_mode: CPU", "solver_mode: GPU"))
    code, err = run(capsys, "train", "--solver", "solver.prototxt")
    assert code == 0 and "Using GPUs 0" in err
    warnings = [line for line in err.splitlines() if line.startswith("W")]
    assert len(warnings) == 1 and "running on the CPU" in warnings[0]
    assert common.mode() == common.CPU and os.path.exists("snaps/tiny_iter_4.caffemodel")




@pytest.mark.opencl
def test_a_gpu_that_does_not_exist_is_one_paragraph(workdir, capsys, monkeypatch):
    monkeypatch.delenv("MINICAFFE_DEVICE", raising=False)
    for verb in (["train", "--solver", "solver.prototxt"], ["time", "--model", "net.prototxt"],
                 ["device_query"]):
        code, err = run(capsys, *verb, "--gpu", "42")
        assert_one_paragraph_error(code, err, "OpenCL device '42' does not exist", "Devices found:")


@pytest.mark.opencl
def test_device_query_prints_the_device(capsys):
    from minicaffe import opencl
    assert cli.main(["device_query"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == opencl.device_query().strip()
    assert "Name:" in out and opencl.device().device.name in out
    assert cli.main(["device_query", "--gpu", "0"]) == 0 and "Device id:           0" in capsys.readouterr().out


LAYER_LINE = r"\] +(\S+)\t(forward|backward): (\S+) ms\.$"


def time_report(err):
    import re
    per_layer = [re.search(LAYER_LINE, line) for line in err.splitlines()]
    per_layer = [(m[1], m[2], float(m[3])) for m in per_layer if m]
    totals = {}
    for key in ("Average Forward pass", "Average Backward pass", "Average Forward-Backward", "Total Time"):
        lines = [line for line in err.splitlines() if f"] {key}: " in line]
        assert len(lines) == 1 and lines[0].endswith(" ms."), key
        totals[key] = float(lines[0].split(f"{key}: ")[1][:-len(" ms.")])
    return per_layer, totals


@pytest.mark.parametrize("engine", ["cpu", pytest.param("gpu", marks=pytest.mark.opencl)])
def test_time_reports_every_layer_like_caffe(workdir, capsys, engine, monkeypatch):
    argv = ["time", "--model", "net.prototxt", "--iterations", "3"]
    if engine == "gpu":
        from minicaffe.layer import layer_registry
        if not layer_registry()["InnerProduct"].has_gpu() or not layer_registry()["EuclideanLoss"].has_gpu():
            pytest.skip("InnerProduct / EuclideanLoss have no OpenCL kernel yet")
        argv += ["--gpu", "0"]
    code, err = run(capsys, *argv)
    assert code == 0, err
    assert ("Use GPU with device ID 0" if engine == "gpu" else "Use CPU.") in err
    assert "Initial loss: " in err and "Testing for 3 iterations." in err
    assert sum("forward-backward time:" in line for line in err.splitlines()) == 3
    per_layer, totals = time_report(err)
    # Caffe's order: each layer's forward line, then its backward line, layers in net order.
    assert [(name, kind) for name, kind, _ in per_layer] == [
        ("data", "forward"), ("data", "backward"), ("ip", "forward"), ("ip", "backward"),
        ("loss", "forward"), ("loss", "backward")]
    assert "Average time per layer: " in err and err.rstrip().endswith("*** Benchmark ends ***")
    assert all(ms >= 0 for _, _, ms in per_layer)
    forward = sum(ms for _, kind, ms in per_layer if kind == "forward")
    backward = sum(ms for _, kind, ms in per_layer if kind == "backward")
    # The layers' times add up to (at most) the pass times, which add up to the whole.
    assert forward <= totals["Average Forward pass"] * 1.001 + 1e-3
    assert backward <= totals["Average Backward pass"] * 1.001 + 1e-3
    assert totals["Average Forward pass"] + totals["Average Backward pass"] <= \
        totals["Average Forward-Backward"] * 1.001 + 1e-3
    assert totals["Total Time"] == pytest.approx(3 * totals["Average Forward-Backward"], rel=1e-3)


def test_time_takes_the_phase_and_checks_its_flags(workdir, capsys):
    (workdir / "phased.prototxt").write_text(net_text(data=SequenceDataLayer.type).replace(
        'layer { name: "loss"', 'layer { name: "loss" include { phase: TRAIN }'))
    code, err = run(capsys, "time", "--model", "phased.prototxt", "--iterations", "1", "--phase", "TEST")
    assert code == 0
    names = [name for name, _, _ in time_report(err)[0]]
    assert names == ["data", "data", "ip", "ip"]  # the TRAIN-only loss layer is gone
    assert_one_paragraph_error(*run(capsys, "time"), "Need a model definition to time")
    assert_one_paragraph_error(*run(capsys, "time", "--model", "net.prototxt", "--iterations", "0"),
                               "--iterations must be at least 1")


def test_mnist_verbs_call_the_io_module(workdir, capsys, monkeypatch):
    from minicaffe.common import MinicaffeError
    from minicaffe.io import mnist
    calls = []
    monkeypatch.setattr(mnist, "convert_mnist_data", lambda *a: calls.append(("convert",) + a))
    monkeypatch.setattr(mnist, "download_mnist", lambda dest: calls.append(("download", dest)))
    assert run(capsys, "convert_mnist_data", "imgs", "lbls", "db", "--backend", "lmdb")[0] == 0
    assert run(capsys, "data", "mnist", "--dest", "d")[0] == 0
    assert run(capsys, "data", "mnist")[0] == 0
    assert calls == [("convert", "imgs", "lbls", "db", "lmdb"), ("download", "d"), ("download", "data/mnist")]

    def fail(dest):
        raise MinicaffeError("no mirror answered:\n\n  mirror a: timeout")
    monkeypatch.setattr(mnist, "download_mnist", fail)
    assert_one_paragraph_error(*run(capsys, "data", "mnist"), "no mirror answered", "mirror a: timeout")


def test_unknown_verb_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["brew"])
    assert exc.value.code == 2
