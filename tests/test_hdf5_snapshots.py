"""snapshot_format: HDF5: Caffe's .caffemodel.h5 / .solverstate.h5 layout, exact resume
(the HDF5Data reading position included), weights from .caffemodel.h5, shared
parameters, and clear errors for files that do not fit the net."""
import h5py
import numpy as np
import pytest
from google.protobuf import text_format

from minicaffe import common, protoio
from minicaffe.common import MinicaffeError
from minicaffe.net import Net
from minicaffe.proto import caffe_pb2
from minicaffe.solvers import get_solver


@pytest.fixture(autouse=True)
def keep_engine():
    """Each test leaves the process-wide mode as it found it."""
    old = common.mode()
    yield
    common.set_mode(old)


@pytest.fixture
def h5_source(tmp_path):
    """Two HDF5 files of a small regression problem (y = A x + noise), listed in a file."""
    rng = np.random.default_rng(5)
    a = rng.normal(size=(2, 3))
    files = []
    for k, rows in enumerate((7, 5)):
        x = rng.normal(size=(rows, 3)).astype(np.float32)
        y = (x @ a.T + 0.1 * rng.normal(size=(rows, 2))).astype(np.float32)
        with h5py.File(tmp_path / f"part{k}.h5", "w") as f:
            f["x"], f["y"] = x, y
        files.append(str(tmp_path / f"part{k}.h5"))
    (tmp_path / "train.txt").write_text("\n".join(files))
    return str(tmp_path / "train.txt")


def net_text(source, shared=False):
    share = 'name: "w"' if shared else ""
    second = f"""
    layer {{ name: "ip2" type: "InnerProduct" bottom: "x" top: "q"
            param {{ {share} }} param {{ }}
            inner_product_param {{ num_output: 2 weight_filler {{ type: "gaussian" std: 0.5 }} }} }}
    layer {{ name: "sum" type: "Eltwise" bottom: "p" bottom: "q" top: "s" }}""" if shared else ""
    return f"""
    name: "h5net"
    layer {{ name: "data" type: "HDF5Data" top: "x" top: "y"
            hdf5_data_param {{ source: "{source}" batch_size: 4 shuffle: true }} }}
    layer {{ name: "ip" type: "InnerProduct" bottom: "x" top: "p"
            param {{ {share} lr_mult: 1 }} param {{ lr_mult: 2 }}
            inner_product_param {{ num_output: 2 weight_filler {{ type: "gaussian" std: 0.5 }}
                                  bias_filler {{ type: "constant" value: 0.1 }} }} }}
    {second}
    layer {{ name: "loss" type: "EuclideanLoss" bottom: "{'s' if shared else 'p'}" bottom: "y" top: "loss" }}
    """


def solver(source, prefix, extra="", shared=False):
    text = (f"net_param {{ {net_text(source, shared)} }}\n"
            'base_lr: 0.05 momentum: 0.9 weight_decay: 0.01 lr_policy: "step" gamma: 0.5 stepsize: 2 '
            "max_iter: 6 snapshot: 3 display: 0 solver_mode: CPU random_seed: 7 "
            f'snapshot_format: HDF5 snapshot_prefix: "{prefix}" {extra}')
    return get_solver(text_format.Merge(text, caffe_pb2.SolverParameter()))  # later fields win


def weights(net):
    return [p.cpu_data().copy() for p in net.learnable_params]


def test_snapshots_have_caffes_hdf5_layout(tmp_path, h5_source):
    s = solver(h5_source, tmp_path / "run", 'snapshot_diff: true')
    s.solve()
    model, state = tmp_path / "run_iter_3.caffemodel.h5", tmp_path / "run_iter_3.solverstate.h5"
    assert model.is_file() and state.is_file()
    assert not (tmp_path / "run_iter_3.caffemodel").exists()
    for path in (model, state):  # written atomically, with the permissions of any new file
        assert path.stat().st_mode & 0o777 == 0o666 & ~protoio.current_umask()
    assert not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob(".*"))
    with h5py.File(model, "r") as f:
        assert sorted(f) == ["data", "diff"]
        assert sorted(f["data"]) == ["data", "ip", "loss"]  # a group per layer, as in Caffe
        assert len(f["data/data"]) == 0
        assert sorted(f["data/ip"]) == ["0", "1"]
        assert f["data/ip/0"].shape == (2, 3) and f["data/ip/1"].shape == (2,)
        assert f["data/ip/0"].dtype == np.float32
        assert f["diff/ip/0"].shape == (2, 3)
    with h5py.File(tmp_path / "run_iter_6.caffemodel.h5", "r") as f:
        np.testing.assert_array_equal(f["data/ip/0"][()], s.net.learnable_params[0].cpu_data())
        np.testing.assert_array_equal(f["data/ip/1"][()], s.net.learnable_params[1].cpu_data())
        np.testing.assert_array_equal(f["diff/ip/0"][()], s.net.learnable_params[0].cpu_diff())
    with h5py.File(state, "r") as f:
        assert sorted(f) == ["current_step", "history", "iter", "learned_net"]
        # As HDF5's H5LTmake_dataset_int / _string write them for Caffe.
        assert f["iter"].shape == (1,) and f["iter"].dtype == np.int32 and f["iter"][0] == 3
        assert f["current_step"].shape == (1,) and f["current_step"][0] == 1
        assert f["learned_net"].shape == () and f["learned_net"][()].decode() == str(model)
        assert f["learned_net"].id.get_type().get_strpad() == h5py.h5t.STR_NULLTERM
        assert sorted(f["history"]) == ["0", "1"]
        assert f["history/0"].shape == (2, 3)


def test_without_snapshot_diff_there_is_no_diff_group(tmp_path, h5_source):
    s = solver(h5_source, tmp_path / "run")
    s.step(1)
    s.snapshot()
    with h5py.File(tmp_path / "run_iter_1.caffemodel.h5", "r") as f:
        assert list(f) == ["data"]


@pytest.mark.parametrize("kind", ["SGD", "Adam"])
def test_resume_from_solverstate_h5_matches_a_straight_run(mode, tmp_path, h5_source, kind):
    engine = f'type: "{kind}" solver_mode: {"GPU" if mode == common.GPU else "CPU"}'
    straight = solver(h5_source, tmp_path / "a", engine)
    straight.solve()
    resumed = solver(h5_source, tmp_path / "b", engine)
    resumed.solve(resume_file=str(tmp_path / "a_iter_3.solverstate.h5"))
    assert resumed.iter == 6 and resumed.current_step == straight.current_step == 2
    for a, b in zip(weights(straight.net), weights(resumed.net)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(straight.history, resumed.history):
        np.testing.assert_array_equal(a.cpu_data(), b.cpu_data())
    # Without the state (weights only: no history, no data position) the run differs.
    weights_only = solver(h5_source, tmp_path / "c", engine)
    weights_only.net.copy_trained_layers_from(str(tmp_path / "a_iter_3.caffemodel.h5"))
    weights_only.step(3)
    assert not np.array_equal(weights(weights_only.net)[0], weights(straight.net)[0])


def test_hdf5_and_binaryproto_snapshots_resume_alike(tmp_path, h5_source):
    solver(h5_source, tmp_path / "h").solve()
    solver(h5_source, tmp_path / "p", "snapshot_format: BINARYPROTO").solve()
    from_h5 = solver(h5_source, tmp_path / "x")
    from_h5.restore(str(tmp_path / "h_iter_3.solverstate.h5"))
    from_proto = solver(h5_source, tmp_path / "y")
    from_proto.restore(str(tmp_path / "p_iter_3.solverstate"))
    assert from_h5.iter == from_proto.iter == 3
    for a, b in zip(weights(from_h5.net), weights(from_proto.net)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(from_h5.history, from_proto.history):
        np.testing.assert_array_equal(a.cpu_data(), b.cpu_data())


def test_a_net_takes_its_weights_from_a_caffemodel_h5(tmp_path, h5_source):
    s = solver(h5_source, tmp_path / "run")
    s.solve()
    deployed = Net(text_format.Parse(net_text(h5_source), caffe_pb2.NetParameter()),
                   caffe_pb2.TEST, weights=str(tmp_path / "run_iter_6.caffemodel.h5"))
    for a, b in zip(weights(deployed), weights(s.net)):
        np.testing.assert_array_equal(a, b)
    # Net.save_hdf5 writes the same file a snapshot does.
    deployed.save_hdf5(tmp_path / "copy.caffemodel.h5")
    with h5py.File(tmp_path / "copy.caffemodel.h5", "r") as f:
        np.testing.assert_array_equal(f["data/ip/0"][()], weights(s.net)[0])


def test_a_shared_parameter_is_written_by_its_owner_only(tmp_path, h5_source):
    s = solver(h5_source, tmp_path / "run", "snapshot_diff: true", shared=True)
    s.step(2)
    s.snapshot()
    path = tmp_path / "run_iter_2.caffemodel.h5"
    with h5py.File(path, "r") as f:
        assert sorted(f["data/ip"]) == ["0", "1"]
        assert sorted(f["data/ip2"]) == ["1"]  # its weight is ip's
        assert sorted(f["diff/ip2"]) == ["0", "1"]  # diffs are written for every layer
    fresh = solver(h5_source, tmp_path / "other", shared=True)
    fresh.net.copy_trained_layers_from(str(path))
    for a, b in zip(weights(fresh.net), weights(s.net)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fresh.net.layer_dict["ip2"].blobs[0].cpu_data(),
                                  s.net.layer_dict["ip"].blobs[0].cpu_data())


# ---------------------------------------------------------------- bad files
def test_a_weight_of_the_wrong_shape(tmp_path, h5_source):
    with h5py.File(tmp_path / "bad.caffemodel.h5", "w") as f:
        f["data/ip/0"] = np.zeros((3, 3), np.float32)
        f["data/ip/1"] = np.zeros(2, np.float32)
    s = solver(h5_source, tmp_path / "run")
    with pytest.raises(MinicaffeError, match=r"bad.caffemodel.h5: cannot copy param 0 weights of "
                                             r"layer 'ip'; shape mismatch: the file has \(3, 3\), "
                                             r"the net has \(2, 3\)"):
        s.net.copy_trained_layers_from(str(tmp_path / "bad.caffemodel.h5"))


def test_a_missing_weight_dataset_and_too_many(tmp_path, h5_source):
    s = solver(h5_source, tmp_path / "run")
    with h5py.File(tmp_path / "short.caffemodel.h5", "w") as f:
        f["data/ip/0"] = np.zeros((2, 3), np.float32)
    with pytest.raises(MinicaffeError, match=r"layer 'ip' has no dataset '1'"):
        s.net.copy_trained_layers_from(str(tmp_path / "short.caffemodel.h5"))
    with h5py.File(tmp_path / "long.caffemodel.h5", "w") as f:
        for j in range(3):
            f[f"data/ip/{j}"] = np.zeros(2, np.float32)
    with pytest.raises(MinicaffeError, match=r"layer 'ip' has 3 parameter dataset\(s\) in the file "
                                             r"and 2 blob\(s\) in the net"):
        s.net.copy_trained_layers_from(str(tmp_path / "long.caffemodel.h5"))


def test_files_that_are_not_caffe_snapshots(tmp_path, h5_source):
    s = solver(h5_source, tmp_path / "run")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    with h5py.File(tmp_path / "renamed.caffemodel.h5", "w") as f:
        f["data/fc/0"] = np.zeros((2, 3), np.float32)
    with pytest.raises(MinicaffeError, match=r"renamed.caffemodel.h5: no layer of net 'h5net' got "
                                             r"weights .*its layers are \['fc'\]"):
        s.net.copy_trained_layers_from(str(tmp_path / "renamed.caffemodel.h5"))
    with pytest.raises(MinicaffeError, match=r"other.h5: no group 'data'"):
        s.net.copy_trained_layers_from(str(tmp_path / "other.h5"))
    with pytest.raises(MinicaffeError, match=r"other.h5: no 'iter' in this HDF5 file"):
        s.restore(str(tmp_path / "other.h5"))
    with pytest.raises(MinicaffeError, match=r"HDF5 file .*gone.solverstate.h5' does not exist"):
        s.restore(str(tmp_path / "gone.solverstate.h5"))


def test_a_state_of_another_solver_type(tmp_path, h5_source):
    solver(h5_source, tmp_path / "sgd").solve()
    adam = solver(h5_source, tmp_path / "adam", 'type: "Adam"')
    with pytest.raises(MinicaffeError, match=r"2 history blob\(s\) stored, but this Adam solver "
                                             r"keeps 4"):
        adam.restore(str(tmp_path / "sgd_iter_3.solverstate.h5"))


# ---------------------------------------------------------------- the command line
def test_cli_trains_resumes_and_tests_with_hdf5_files(tmp_path, h5_source, monkeypatch, capsys):
    from minicaffe import cli
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(net_text(h5_source))
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt" base_lr: 0.05 momentum: 0.9 lr_policy: "fixed" max_iter: 4 '
        'snapshot: 2 snapshot_format: HDF5 snapshot_prefix: "snap" solver_mode: CPU random_seed: 3')
    assert cli.main(["train", "--solver", "solver.prototxt"]) == 0
    assert sorted(p.name for p in tmp_path.glob("snap_*")) == [
        "snap_iter_2.caffemodel.h5", "snap_iter_2.solverstate.h5",
        "snap_iter_4.caffemodel.h5", "snap_iter_4.solverstate.h5"]
    with h5py.File("snap_iter_4.caffemodel.h5", "r") as f:
        straight = f["data/ip/0"][()]
    (tmp_path / "snap_iter_4.caffemodel.h5").unlink()
    assert cli.main(["train", "--solver", "solver.prototxt", "--snapshot", "snap_iter_2.solverstate.h5"]) == 0
    with h5py.File("snap_iter_4.caffemodel.h5", "r") as f:
        np.testing.assert_array_equal(f["data/ip/0"][()], straight)
    capsys.readouterr()
    assert cli.main(["test", "--model", "net.prototxt", "--weights", "snap_iter_4.caffemodel.h5",
                     "--iterations", "2"]) == 0
    assert "loss = " in capsys.readouterr().err
    assert cli.main(["train", "--solver", "solver.prototxt", "--snapshot", "net.h5"]) == 1
    err = capsys.readouterr().err
    assert "minicaffe: error: " in err and "net.h5' does not exist" in err and "Traceback" not in err


def test_layer_names_with_slashes_round_trip(tmp_path):
    # GoogLeNet's "inception_3a/1x1" style: HDF5 reads the name as a path, so layer
    # "inc/ip"'s group sits inside layer "inc"'s group beside its datasets.
    text = """
    layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
    layer { name: "inc" type: "InnerProduct" bottom: "x" top: "a"
            inner_product_param { num_output: 3 weight_filler { type: "gaussian" } } }
    layer { name: "inc/ip" type: "InnerProduct" bottom: "a" top: "b"
            inner_product_param { num_output: 2 weight_filler { type: "gaussian" } } }"""
    param = text_format.Parse(text, caffe_pb2.NetParameter())
    common.set_random_seed(1)
    first = Net(param, caffe_pb2.TEST)
    first.save_hdf5(tmp_path / "w.caffemodel.h5")
    common.set_random_seed(2)
    second = Net(param, caffe_pb2.TEST)
    assert not np.array_equal(weights(first)[0], weights(second)[0])
    second.copy_trained_layers_from(str(tmp_path / "w.caffemodel.h5"))
    for a, b in zip(weights(first), weights(second)):
        np.testing.assert_array_equal(a, b)
