"""int8 post-training quantization (minicaffe/quantize.py, opencl/quantize.cl, the CLI verbs).

Known answers worked by hand (scales, rounding half to even, clipping, per-channel
scales), int32 accumulators against Python's exact integers, numpy against OpenCL bit
for bit, and a LeNet trained briefly on real digits: its int8 twin scores within a
point of it, round-trips through the file, and takes a quarter of the weight bytes.
"""
from pathlib import Path

import h5py
import numpy as np
import pytest

from minicaffe import cli, common
from minicaffe import quantize as Q
from minicaffe.common import MinicaffeError
from minicaffe.io.mnist import convert_mnist_data
from minicaffe.net import TEST, Net
from minicaffe.protoio import read_net_param, read_solver_param, write_text
from minicaffe.solvers import get_solver

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "mnist"
TEST_DIGITS = 1000  # 10 test batches of LeNet's 100


# ---------------------------------------------------------------- by hand
def test_quantize_rounds_half_to_even_and_clips():
    # s = 0.5 (exact in binary, so x / s is exact): x / s = 0.5, 1.5, 2.5, -0.5, 200, -128, 63.4
    x = np.array([0.25, 0.75, 1.25, -0.25, 100.0, -64.0, 31.7], np.float32)
    q = Q.quantize(x, 0.5)
    assert q.dtype == np.int8
    assert q.tolist() == [0, 2, 2, 0, 127, -127, 63]  # ties to even; +-127 clip (never -128)
    assert Q.dequantize(q, 0.5).tolist() == [0.0, 1.0, 1.0, 0.0, 63.5, -63.5, 31.5]


def test_scales_are_per_output_channel():
    w = np.array([[127.0, -63.5, 2.5, 0.49],      # max |w| 127 -> s = 1
                  [-254.0, 100.0, 1.0, 0.0]],      # max |w| 254 -> s = 2
                 np.float32)
    q, s = Q.quantize_weights(w)
    assert s.tolist() == [1.0, 2.0]
    assert q.tolist() == [[127, -64, 2, 0], [-127, 50, 0, 0]]  # 0.5 -> 0: half to even
    # One scale for the whole tensor (2) would cost row 0 half its resolution:
    assert Q.quantize(w[0], 2.0).tolist() == [64, -32, 1, 0]
    # A channel of zeros (say, pruned) gets scale 1, not a division by zero.
    q, s = Q.quantize_weights(np.zeros((2, 1, 3, 3), np.float32))
    assert s.tolist() == [1.0, 1.0] and not q.any() and q.shape == (2, 1, 3, 3)


def test_int8_gemm_equals_exact_integer_sums():
    rng = np.random.default_rng(0)
    for M, K, N in [(3, 7, 5), (4, Q.FLOAT32_EXACT_DOT_LENGTH, 3), (2, 3000, 4)]:
        a = rng.integers(-127, 128, (M, K)).astype(np.int8)
        b = rng.integers(-127, 128, (K, N)).astype(np.int8)
        a[0], b[:, 0] = 127, -127  # the extreme sum, -K * 16129: past 2^24 once K > 1040
        exact = [[sum(int(a[i, k]) * int(b[k, j]) for k in range(K)) for j in range(N)] for i in range(M)]
        got = Q.int8_gemm(a, b)
        assert got.dtype == np.int32 and got.tolist() == exact, (M, K, N)
    with pytest.raises(MinicaffeError, match="overflow an int32"):
        Q.int8_gemm(np.zeros((1, Q.MAX_DOT_LENGTH + 1), np.int8), np.zeros((Q.MAX_DOT_LENGTH + 1, 1), np.int8))


# ---------------------------------------------------------------- a LeNet trained on real digits
@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    """Caffe's LeNet example trained 50 iterations on real digits, at base_lr 0.03 rather
    than 0.01 to get past 90% that soon: its prototxt (reading 1000 test digits), weights,
    and their folder."""
    folder = tmp_path_factory.mktemp("lenet")
    train, test = folder / "train_lmdb", folder / "test_lmdb"
    convert_mnist_data(DATA / "train-10k-images-idx3-ubyte.gz", DATA / "train-10k-labels-idx1-ubyte.gz",
                       train, limit=3200, progress=False)
    convert_mnist_data(DATA / "t10k-images-idx3-ubyte.gz", DATA / "t10k-labels-idx1-ubyte.gz", test,
                       limit=TEST_DIGITS, progress=False)
    net = read_net_param(ROOT / "examples/mnist/lenet_train_test.prototxt")
    for layer, source in zip([l for l in net.layer if l.type == "Data"], (train, test)):
        layer.data_param.source = str(source)
    model = folder / "lenet.prototxt"
    write_text(model, net)
    param = read_solver_param(ROOT / "examples/mnist/lenet_solver.prototxt")
    param.ClearField("net")
    param.net = str(model)
    param.max_iter, param.display, param.snapshot, param.random_seed = 50, 0, 0, 1
    param.base_lr = 0.03
    param.test_interval, param.test_initialization, param.snapshot_after_train = 10**6, False, False
    param.solver_mode = param.CPU
    with common.using_mode(common.CPU):
        solver = get_solver(param)
        solver.solve()
    weights = folder / "lenet.caffemodel"
    solver.net.save(weights)
    return model, weights, folder


def accuracy(net, batches: int = TEST_DIGITS // 100) -> float:
    scores = []
    for _ in range(batches):
        net.forward_loss()
        scores.append(float(net.blobs["accuracy"].data))
    return float(np.mean(scores))


@pytest.fixture(scope="module")
def quantized(lenet):
    model, weights, folder = lenet
    with common.using_mode(common.CPU):
        net = Net(model, TEST, weights=weights)
        q = Q.quantize_net(net, calibration_batches=3, model=str(model))
    path = folder / "lenet_int8.h5"
    Q.save(q, path)
    return q, path


def test_int8_lenet_scores_like_the_float_one(lenet, quantized):
    model, weights, _ = lenet
    q, _ = quantized
    assert [layer.name for layer in q.layers] == ["conv1", "conv2", "ip1", "ip2"]
    with common.using_mode(common.CPU):
        float_net, int8_net = Net(model, TEST, weights=weights), Q.QuantizedNet(model, q)
        float_accuracy, int8_accuracy = accuracy(float_net), accuracy(int8_net)
        # The same batch through both: the logits move by a few percent of their range.
        float_net.forward_loss(), int8_net.forward_loss()
        a, b = float_net.blobs["ip2"].data, int8_net.blobs["ip2"].data
    assert float_accuracy > 0.85
    assert abs(int8_accuracy - float_accuracy) <= 0.01, (float_accuracy, int8_accuracy)
    assert np.abs(a - b).max() < 0.05 * np.abs(a).max()
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.97


def test_the_file_round_trips_and_weighs_a_quarter(lenet, quantized):
    _, weights, _ = lenet
    q, path = quantized
    back = Q.load(path)
    assert (back.net_name, back.calibration_batches, back.calibration_phase) == ("LeNet", 3, "TEST")
    for a, b in zip(q.layers, back.layers):
        assert (a.name, a.type, a.input_scale) == (b.name, b.type, b.input_scale)
        for field in ("weight", "weight_scale", "bias"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert b.weight.dtype == np.int8
    size = q.weight_bytes()
    assert size["int8"] == 430_500 and size["float32"] == 4 * size["int8"]  # LeNet: 430,500 weights
    # Scales and biases add 2 floats per output channel (and s_x): 2 x 580 x 4 + 16 bytes.
    assert size["scales_and_biases"] == 2 * (20 + 50 + 500 + 10) * 4 + 4 * 4
    assert path.stat().st_size < 0.27 * Path(weights).stat().st_size


@pytest.mark.opencl
def test_opencl_gives_numpys_integers(lenet, quantized):
    """Exactly the same int8 inputs and int32 accumulators on both engines, every layer, real digits."""
    model, _, _ = lenet
    q, _ = quantized
    results = {}
    for mode in (common.CPU, common.GPU):
        with common.using_mode(mode):
            qnet = Q.QuantizedNet(model, q)
            qnet.forward_loss()
            acc = {r.name: qnet.by_layer[r.name].accumulators(r.layer, r.bottom_vec[0])
                   for r in qnet.net.layer_records if r.name in qnet.by_layer}
            results[mode] = acc, qnet.blobs["ip2"].data.copy()
    (cpu_acc, cpu_out), (gpu_acc, gpu_out) = results[common.CPU], results[common.GPU]
    for name, values in cpu_acc.items():
        assert values.dtype == gpu_acc[name].dtype == np.int32
        np.testing.assert_array_equal(gpu_acc[name], values, err_msg=name)
        assert np.abs(values).max() > 1000, name  # real sums, not zeros
    np.testing.assert_allclose(gpu_out, cpu_out, rtol=0, atol=1e-4 * np.abs(cpu_out).max())


@pytest.mark.opencl
def test_opencl_kernels_on_extreme_values():
    rng = np.random.default_rng(1)
    with common.using_mode(common.GPU):
        # quantize: ties, clipping, the float32 values next to each tie
        x = np.array([0.25, 0.75, 1.25, -0.25, 100, -64, *np.nextafter(np.float32(0.75), [0, 1])],
                     np.float32)
        x = np.concatenate([x, rng.normal(0, 40, 997).astype(np.float32)])
        q_dev = Q.upload(np.zeros(x.size, np.int8))
        Q.quantize_gpu(x.size, Q.upload(x), 0.5, q_dev)
        np.testing.assert_array_equal(Q.download(q_dev, x.size, np.int8), Q.quantize(x, 0.5))
        # int8 GEMM, B plain and transposed, sums past 2^24
        M, N, K = 6, 37, 1500  # rows past a strip of 4, columns past two vectors of 16
        a = rng.integers(-127, 128, (M, K)).astype(np.int8)
        b = rng.integers(-127, 128, (K, N)).astype(np.int8)
        a[0], b[:, 0] = 127, -127
        exact = a.astype(np.int64) @ b.astype(np.int64)
        for trans_b, stored in ((False, b), (True, np.ascontiguousarray(b.T))):
            c = Q.upload(np.zeros(M * N, np.int32))
            Q.gemm_int8(M, N, K, Q.upload(a), 0, Q.upload(stored), 0, trans_b, c, 0)
            np.testing.assert_array_equal(Q.download(c, M * N, np.int32).reshape(M, N), exact)
        assert exact[0, 0] == -K * 127 * 127


# ---------------------------------------------------------------- the command line
def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_quantize_then_test_quantized_from_the_command_line(lenet, tmp_path, capsys):
    model, weights, _ = lenet
    out = tmp_path / "q.h5"
    try:
        code, err = run(capsys, "quantize", "--model", model, "--weights", weights,
                        "--calibration-batches", 2, "--output", out)
        assert code == 0, err
        assert "weights 430500 bytes in int8 against 1722000 in float32" in err
        assert Q.load(out).calibration_batches == 2
        code, err = run(capsys, "test", "--quantized", out, "--model", model, "--iterations", 3)
        assert code == 0, err
        batches = [float(line.rsplit("= ", 1)[1]) for line in err.splitlines() if ", accuracy = " in line]
        mean = float(next(line for line in err.splitlines() if "] accuracy = " in line).rsplit("= ", 1)[1])
        assert len(batches) == 3 and mean == pytest.approx(np.mean(batches), abs=1e-4) and mean > 0.8
    finally:
        common.set_mode(common.CPU)


@pytest.mark.parametrize("argv, fragments", [
    (["quantize", "--model", "{model}", "--weights", "{weights}"], ["needs --output"]),
    (["quantize", "--model", "{model}", "--weights", "{weights}", "--output", "{tmp}/q.caffemodel"],
     ["the .h5 suffix"]),
    (["quantize", "--model", "{model}", "--weights", "{weights}", "--output", "{tmp}/q.h5",
      "--calibration-batches", "0"], ["--calibration-batches must be at least 1"]),
    (["quantize", "--model", "{model}", "--weights", "{weights}", "--output", "{tmp}/nowhere/q.h5"],
     ["directory", "does not exist"]),
    (["test", "--model", "{model}", "--quantized", "{weights}"], ["loading a quantized model", "lenet.caffemodel"]),
    (["test", "--model", "{model}", "--quantized", "{tmp}/missing.h5"], ["missing.h5", "does not exist"]),
    (["test", "--model", "{tmp}/wide.prototxt", "--quantized", "{q}"],
     ["layer 'ip1'", "the file's weights have shape (500, 800), the net's (600, 800)"]),
    (["test", "--model", "{model}", "--quantized", "{tmp}/bad.h5"], ["layer 'conv1'", "-128"]),
])
def test_user_errors_are_one_paragraph(lenet, quantized, tmp_path, capsys, argv, fragments):
    model, weights, _ = lenet
    _, q = quantized
    wide = read_net_param(model)
    next(l for l in wide.layer if l.name == "ip1").inner_product_param.num_output = 600
    write_text(tmp_path / "wide.prototxt", wide)
    (tmp_path / "bad.h5").write_bytes(Path(q).read_bytes())
    with h5py.File(tmp_path / "bad.h5", "r+") as f:
        f["layers/0/weight"][0, 0, 0, 0] = -128
    names = dict(model=model, weights=weights, tmp=tmp_path, q=q)
    try:
        code, err = run(capsys, *[a.format(**names) for a in argv])
    finally:
        common.set_mode(common.CPU)
    assert code == 1 and "Traceback" not in err
    message = err[err.index("minicaffe: error: "):].strip()
    assert "\n\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_a_net_without_the_float_weights_it_needs_is_refused(lenet, quantized, tmp_path):
    model, _, _ = lenet
    q, _ = quantized
    partial = Q.QuantizedModel(q.net_name, q.layers[:3])  # ip2 left in float: its weights are needed
    with pytest.raises(MinicaffeError, match=r"layers \['ip2'\] .* give the float weights too"):
        Q.QuantizedNet(model, partial)
