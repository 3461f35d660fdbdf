"""Lesson 18 check: quantize / dequantize worked by hand (rounding half to even, clipping),
per-channel scales, exact int32 sums, and an int8 inner product on real MNIST digits that
matches minicaffe.quantize; then the three sources of error, measured."""
import numpy as np
import pytest

from minicaffe import common
from minicaffe import quantize as Q
from minicaffe.io.idx import read_images, read_labels
from minicaffe.net import Net
from minicaffe.proto import caffe_pb2

pytestmark = pytest.mark.lesson18


def digits(mnist, path: str, count: int):
    """`count` MNIST digits as (count, 784) float32 scaled by 1/256 (Caffe's scale), and labels."""
    pixels = read_images(mnist / f"{path}-images-idx3-ubyte.gz")[:count]
    labels = read_labels(mnist / f"{path}-labels-idx1-ubyte.gz")[:count]
    return pixels.reshape(count, -1).astype(np.float32) * np.float32(1 / 256), labels


def linear_classifier(x, labels, ridge: float = 10.0):
    """Ridge regression on one-hot targets: real trained weights (10, 784) and bias (10,)."""
    targets = np.eye(10)[labels]
    xb = np.hstack([x, np.ones((len(x), 1), np.float32)]).astype(np.float64)
    solution = np.linalg.solve(xb.T @ xb + ridge * np.eye(xb.shape[1]), xb.T @ targets)
    return solution[:-1].T.astype(np.float32), solution[-1].astype(np.float32)


@pytest.fixture(scope="module")
def classifier(lesson_dir):
    """A linear classifier fitted on 3000 real training digits, 1000 test digits, and
    a max-abs input scale calibrated on 500 training digits."""
    mnist = lesson_dir.parents[1] / "data" / "mnist"
    train_x, train_y = digits(mnist, "train-10k", 3000)
    w, b = linear_classifier(train_x, train_y)
    test_x, test_y = digits(mnist, "t10k", 1000)
    return w, b, test_x, test_y, float(np.abs(train_x[:500]).max()) / 127


def test_quantize_and_dequantize_by_hand(lesson):
    # s = 0.5 is exact in binary: x / s = 0.5, 1.5, 2.5, -0.5, 200, -128, 63.4, -2.7
    x = np.array([0.25, 0.75, 1.25, -0.25, 100.0, -64.0, 31.7, -1.35], np.float32)
    q = lesson.quantize(x, 0.5)
    assert q.dtype == np.int8, f"quantize should return int8, got {q.dtype}"
    assert q.tolist() == [0, 2, 2, 0, 127, -127, 63, -3], \
        "expected ties to even (0.5 -> 0, 1.5 -> 2, 2.5 -> 2), +-127 at the ends, -2.7 -> -3"
    assert lesson.dequantize(q, 0.5).tolist() == [0.0, 1.0, 1.0, 0.0, 63.5, -63.5, 31.5, -1.5]
    assert lesson.dequantize(q, 0.5).dtype == np.float32


def test_rounding_error_is_at_most_half_a_step(lesson, classifier):
    _, _, x, _, scale = classifier
    q = lesson.quantize(x, scale)
    error = np.abs(lesson.dequantize(q, scale) - x)
    assert error.max() <= scale / 2 * (1 + 1e-5), "inside the range, the round trip is off by <= s/2"
    reference = Q.quantize(x, scale)
    assert np.abs(q.astype(int) - reference).max() <= 1 and np.mean(q != reference) < 1e-3, \
        "quantize differs from minicaffe.quantize.quantize"


def test_scales_are_per_output_channel(lesson, classifier):
    w = np.array([[127.0, -63.5, 2.5, 0.49], [-254.0, 100.0, 1.0, 0.0], [0, 0, 0, 0]], np.float32)
    s = lesson.channel_scales(w)
    assert s.dtype == np.float32 and s.tolist() == [1.0, 2.0, 1.0], \
        "expected max|w[c]| / 127 per row (1 and 2), and 1 for a row of zeros"
    assert lesson.quantize(w, s[:, None]).tolist() == [[127, -64, 2, 0], [-127, 50, 0, 0], [0, 0, 0, 0]]
    trained = classifier[0]
    np.testing.assert_array_equal(lesson.channel_scales(trained), Q.channel_scales(trained))


def test_accumulators_are_exact_int32_sums(lesson):
    rng = np.random.default_rng(18)
    K = 2000   # long enough that float32 sums would round: 2000 * 127 * 127 > 2**24
    xq = rng.integers(-127, 128, (3, K)).astype(np.int8)
    wq = rng.integers(-127, 128, (4, K)).astype(np.int8)
    xq[0], wq[0] = 127, -127                      # the extreme sum
    xq[1], wq[1] = 127, rng.integers(90, 128, K)  # large partial sums of uneven terms
    acc = lesson.int8_accumulate(xq, wq)
    exact = [[sum(int(a) * int(b) for a, b in zip(xq[n], wq[c])) for c in range(4)] for n in range(3)]
    assert acc.dtype == np.int32, f"accumulators should be int32, got {acc.dtype}"
    assert acc.tolist() == exact, "the accumulators differ from the exact integer sums"
    assert acc[0, 0] == -K * 127 * 127


def test_int8_inner_product_matches_minicaffe(lesson, classifier):
    w, b, x, labels, scale = classifier
    y = lesson.int8_inner_product(x, w, b, scale)
    # minicaffe's int8 InnerProduct, on the same weights, input and scale
    param = caffe_pb2.NetParameter()
    param.layer.add(name="data", type="Input", top=["data"]).input_param.shape.add(dim=list(x.shape))
    param.layer.add(name="ip", type="InnerProduct", bottom=["data"], top=["ip"]
                    ).inner_product_param.num_output = 10
    with common.using_mode(common.CPU):
        net = Net(param)
        net.params["ip"][0].data[...] = w
        net.params["ip"][1].data[...] = b
        net.blobs["data"].data[...] = x
        record = net.layer_records[1]
        Q.quantize_layer(record, 127 * scale).forward(record.layer, record.bottom_vec, record.top_vec)
        expected = net.blobs["ip"].data
    assert y.shape == (len(x), 10) and y.dtype == np.float32
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    float_accuracy = np.mean((x @ w.T + b).argmax(1) == labels)
    assert np.mean(y.argmax(1) == labels) >= float_accuracy - 0.005


def test_where_the_error_comes_from(lesson, classifier):
    """Rounding alone costs little; a range too narrow clips, one too wide coarsens the step."""
    w, b, x, labels, scale = classifier
    reference = x @ w.T + b

    def error(y):
        return float(np.abs(y - reference).mean() / np.abs(reference).mean())

    # weights only (inputs float): the rounding of the weights
    s_w = lesson.channel_scales(w)
    weights_only = x @ lesson.dequantize(lesson.quantize(w, s_w[:, None]), s_w[:, None]).T + b
    errors = {"weights rounded only": error(weights_only),
              "max-abs calibration": error(lesson.int8_inner_product(x, w, b, scale)),
              "range 4x too small: clipping": error(lesson.int8_inner_product(x, w, b, scale / 4)),
              "range 30x too wide: coarse steps": error(lesson.int8_inner_product(x, w, b, scale * 30))}
    print("\nmean |y_int8 - y_float| / mean |y_float|:")
    for what, value in errors.items():
        print(f"  {what:<34} {100 * value:6.2f}%")
    assert errors["weights rounded only"] < errors["max-abs calibration"] < 0.02
    assert errors["range 4x too small: clipping"] > 5 * errors["max-abs calibration"]
    assert errors["range 30x too wide: coarse steps"] > 5 * errors["max-abs calibration"]
