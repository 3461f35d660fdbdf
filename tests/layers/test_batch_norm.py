"""BatchNorm: hand-computed normalization and gradients in both modes, the running
statistics over two TRAIN passes and a TEST net that uses them, use_global_stats by phase,
the statistics kept out of learning (lr_mult 0), Caffe's TestForward properties, gradients
(Caffe's checker: stepsize 1e-2, threshold 1e-4, exhaustive), in-place use, the OpenCL
twin against numpy, bad input."""
import numpy as np
import pytest
from google.protobuf import text_format
from hypothesis import given
from hypothesis import strategies as st

from minicaffe import TEST, TRAIN, Net, common
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.proto import caffe_pb2
from minicaffe.syncedmem import SyncedMemory
from minicaffe.testing import GradientChecker
from minicaffe.testing.engines import compare_engines
from tests.strategies import blob_from, layer_param

# x[n][c][s] of shape (2, 2, 2). Channel 0 holds 1, 3, 1, 3: mean 2, variance 1.
# Channel 1 holds 0, 0, 0, 8: mean 2, variance (4 + 4 + 4 + 36) / 4 = 12.
X = np.float32([[[1, 3], [0, 0]],
                [[1, 3], [0, 8]]])


def batch_norm(phase=TRAIN, **fields):
    param = layer_param("BatchNorm", batch_norm_param=fields)
    param.phase = phase
    return create_layer(param)


def run(layer, x, top=None):
    bottom = x if isinstance(x, Blob) else blob_from(x)
    top = Blob() if top is None else top
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    return bottom, top


def test_known_answer_batch_statistics(mode):
    layer = batch_norm(eps=0)
    bottom, top = run(layer, X)
    # channel 0: (x - 2) / 1; channel 1: (x - 2) / sqrt(12)
    expected = np.float32([[[-1, 1], [-2, -2]], [[-1, 1], [-2, 6]]]) / np.float32([[1], [12 ** 0.5]])
    np.testing.assert_allclose(top.data, expected, rtol=1e-6, atol=1e-7)
    # dy = 1 at the first value of channel 0: dx = dy - mean(dy) - mean(dy y) y
    # = dy - 1/4 + y/4 there (y = -1, 1, -1, 1), i.e. (1/2, 0, -1/2, 0); 0 in channel 1.
    top.diff = np.float32([[[1, 0], [0, 0]], [[0, 0], [0, 0]]])
    layer.backward([top], [True], [bottom])
    np.testing.assert_allclose(bottom.diff, [[[0.5, 0], [0, 0]], [[-0.5, 0], [0, 0]]], atol=1e-6)
    assert not any(b.diff.any() for b in layer.blobs)  # statistics get no gradient


def test_known_answer_global_statistics(mode):
    # Running sums M = (4, 6), V = (8, 2) of weight w = 2: mean (2, 3), variance (4, 1);
    # eps 0.25 makes the divisors sqrt(4.25) and sqrt(1.25).
    layer = batch_norm(use_global_stats=True, eps=0.25)
    bottom, top = blob_from(X), Blob()
    layer.setup([bottom], [top])
    for blob, values in zip(layer.blobs, ([4, 6], [8, 2], [2])):
        blob.data = values
    layer.forward([bottom], [top])
    divisor = np.sqrt(np.float32([[4.25], [1.25]]))
    np.testing.assert_allclose(top.data, (X - [[2], [3]]) / divisor, rtol=1e-6)
    top.diff = np.ones_like(X)
    layer.backward([top], [True], [bottom])
    np.testing.assert_allclose(bottom.diff, np.ones_like(X) / divisor, rtol=1e-6)
    np.testing.assert_array_equal(layer.blobs[2].data, [2])  # nothing updated


def test_zero_weight_means_zero_statistics(mode):
    # A fresh layer (w = 0) in global mode uses mean 0 and variance 0: y = x / sqrt(eps).
    _, top = run(batch_norm(TEST, eps=0.25), X)
    np.testing.assert_allclose(top.data, 2 * X, rtol=1e-6)


NET = """
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 2 dim: 2 } } }
layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y"
        batch_norm_param { moving_average_fraction: 0.5 eps: 0 } }
"""


def test_running_statistics_two_train_passes_then_a_test_net(mode):
    train = Net(text_format.Parse(NET, caffe_pb2.NetParameter()), TRAIN)
    assert train.params_lr == [0, 0, 0]   # the statistics are not learned
    train.forward(x=X)   # batch: mean (2, 2), variance (1, 12), m = 4 values per channel
    train.forward(x=2 * X)   # batch: mean (4, 4), variance (4, 48)
    mean, variance, weight = (b.data for b in train.params["bn"])
    # w: 0 -> 0.5 * 0 + 1 = 1 -> 0.5 * 1 + 1 = 1.5
    np.testing.assert_allclose(weight, [1.5])
    # M: (2, 2) + 0.5 * 0 = (2, 2) -> (4, 4) + 0.5 * (2, 2) = (5, 5)
    np.testing.assert_allclose(mean, [5, 5], rtol=1e-6)
    # V with Bessel's 4/3: (4/3, 16) -> 4/3 * (4, 48) + 0.5 * (4/3, 16) = (6, 72)
    np.testing.assert_allclose(variance, [6, 72], rtol=1e-6)
    # The TEST net (use_global_stats by default) normalizes by M / w and V / w:
    # mean 10/3 in both channels, variance (4, 48).
    test = Net(text_format.Parse(NET, caffe_pb2.NetParameter()), TEST)
    test.copy_trained_layers_from(train.to_proto())
    y = test.forward(x=X)["y"]
    np.testing.assert_allclose(y, (X - 10 / 3) / np.sqrt(np.float32([[4], [48]])), rtol=1e-5)
    np.testing.assert_allclose(test.params["bn"][2].data, [1.5])  # TEST updates nothing


def test_use_global_stats_follows_the_phase_unless_given(mode):
    run(layer := batch_norm(TRAIN), X)
    assert not layer.use_global_stats and layer.blobs[2].data[0] == 1   # updated
    run(layer := batch_norm(TEST), X)
    assert layer.use_global_stats and layer.blobs[2].data[0] == 0
    run(layer := batch_norm(TEST, use_global_stats=False), X)
    assert not layer.use_global_stats and layer.blobs[2].data[0] == 1
    run(layer := batch_norm(TRAIN, use_global_stats=True), X)
    assert layer.use_global_stats and layer.blobs[2].data[0] == 0


def test_param_specs_get_lr_mult_zero():
    layer = batch_norm()
    layer.setup([blob_from(X)], [Blob()])
    assert [(s.lr_mult, s.HasField("lr_mult")) for s in layer.layer_param.param] == [(0, True)] * 3
    given = layer_param("BatchNorm", param=[{"lr_mult": 0}, {"lr_mult": 0, "decay_mult": 0}])
    create_layer(given).setup([blob_from(X)], [Blob()])  # lr_mult 0 given: fine, third added
    assert len(given.param) == 3 and given.param[2].lr_mult == 0
    learnable = layer_param("BatchNorm", "bn1", param=[{"lr_mult": 0}, {"lr_mult": 1}])
    with pytest.raises(MinicaffeError, match="BatchNorm layer 'bn1': param 1 has lr_mult 1"):
        create_layer(learnable).setup([blob_from(X)], [Blob()])


def test_one_value_per_channel_and_one_axis(mode):
    # m = 1: y = 0, and no Bessel's correction (it would divide by 0): V += 0.
    layer = batch_norm()
    _, top = run(layer, [[5.0, -3.0]])
    assert not top.data.any() and not layer.blobs[1].data.any()
    np.testing.assert_allclose(layer.blobs[0].data, [5, -3])
    # One axis: a single channel of N values (mean 2, variance 2/3... times 3/2 = 1).
    layer = batch_norm(eps=0)
    _, top = run(layer, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(top.data, np.float32([-1, 0, 1]) / np.sqrt(2 / 3), rtol=1e-6)
    np.testing.assert_allclose(layer.blobs[1].data, [1.0], rtol=1e-6)


def spread(shape, seed):
    """Values whose every channel is well spread: a shuffled ramp plus noise. The
    gradient of a normalization blows up as a channel's variance goes to 0, where finite
    differences (step 1e-2) stop approximating it."""
    rng = np.random.default_rng(seed)
    n, c = shape[0], shape[1] if len(shape) > 1 else 1
    m = int(np.prod(shape)) // c
    ramps = [rng.permutation(np.linspace(-1.5, 1.5, m)) + rng.uniform(-0.2, 0.2, m) for _ in range(c)]
    # channel-major ramps into (n, c, spatial) order
    return np.stack(ramps).reshape(c, n, -1).transpose(1, 0, 2).reshape(shape).astype(np.float32)


shapes = st.lists(st.integers(1, 3), min_size=1, max_size=4).map(tuple)


@given(shape=shapes.filter(lambda s: 2 <= np.prod(s) <= 8), seed=st.integers(0, 2**31 - 1))
def test_gradient_batch_statistics(mode, shape, seed):
    layer = batch_norm()
    GradientChecker(1e-2, 1e-4).check_gradient_exhaustive(layer, [blob_from(spread(shape, seed))],
                                                          [Blob()])


class StatisticsAsConstants:
    """The layer with its blobs hidden from the checker: with global statistics they are
    constants of the function, and neither Caffe nor minicaffe computes their gradient."""

    def __init__(self, layer, seed):
        self.layer, self.seed, self.blobs = layer, seed, []
        self.type, self.name = layer.type, layer.name

    def setup(self, bottom, top):
        self.layer.setup(bottom, top)
        rng = np.random.default_rng(self.seed)
        channels = self.layer.blobs[0].count
        self.layer.blobs[0].data = rng.uniform(-2, 2, channels)
        self.layer.blobs[1].data = rng.uniform(0.5, 3, channels)
        self.layer.blobs[2].data = rng.uniform(0.5, 2)

    def forward(self, bottom, top):
        return self.layer.forward(bottom, top)

    def backward(self, top, propagate_down, bottom):
        self.layer.backward(top, propagate_down, bottom)


@given(shape=shapes.filter(lambda s: np.prod(s) <= 8), seed=st.integers(0, 2**31 - 1))
def test_gradient_global_statistics(mode, shape, seed):
    layer = StatisticsAsConstants(batch_norm(TEST), seed)
    GradientChecker(1e-2, 1e-4).check_gradient_exhaustive(layer, [blob_from(spread(shape, seed))],
                                                          [Blob()])


@given(n=st.integers(2, 5), c=st.integers(1, 3), spatial=st.lists(st.integers(1, 4), max_size=2),
       seed=st.integers(0, 2**31 - 1), in_place=st.booleans())
def test_zero_mean_unit_variance(mode, n, c, spatial, seed, in_place):
    # Caffe's TestForward / TestForwardInplace: every channel of the top has mean 0 and
    # (biased) variance 1 - eps / (variance + eps), within 1e-3.
    shape = (n, c, *spatial)
    x = np.random.default_rng(seed).normal(0, 1, shape).astype(np.float32) * 3 + 1
    bottom = blob_from(x)
    _, top = run(batch_norm(), bottom, bottom if in_place else None)
    axes = (0, *range(2, len(shape)))
    np.testing.assert_allclose(top.data.mean(axis=axes), 0, atol=1e-3)
    np.testing.assert_allclose((top.data.astype(np.float64) ** 2).mean(axis=axes),
                               x.var(axis=axes) / (x.var(axis=axes) + 1e-5), atol=1e-3)


@pytest.mark.parametrize("phase", [TRAIN, TEST])
def test_in_place_survives_a_later_in_place_layer(mode, phase):
    # Backward must not read the top's data: an in-place layer after this one (a Scale,
    # in every ResNet) has overwritten it by then. Reference: out of place, untouched.
    rng = np.random.default_rng(4)
    x, dy = rng.uniform(-1, 1, (3, 2, 4)), rng.uniform(-1, 1, (3, 2, 4))
    results = []
    for in_place, overwrite in ((False, False), (False, True), (True, True)):
        layer, bottom = batch_norm(phase), blob_from(x)
        top = bottom if in_place else Blob()
        layer.setup([bottom], [top])
        layer.forward([bottom], [top])
        y = top.data.copy()
        if overwrite:
            top.data = 7.0   # what a later in-place layer would do
        top.diff = dy
        layer.backward([top], [True], [bottom])
        results.append((y, bottom.diff.copy()))
    for y, dx in results[1:]:
        np.testing.assert_allclose(y, results[0][0], rtol=1e-6)
        np.testing.assert_allclose(dx, results[0][1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss", [False, True])
def test_training_copy_of_y_only_when_backward_may_ask(loss):
    # Numpy engine, batch statistics, in place: a net with a loss below which something
    # learns keeps y for backward (and gets the reference's gradient); a net without one
    # skips the copy, and its forward (y, running statistics) is unchanged.
    text = """
        layer { name: "in" type: "Input" top: "x" top: "t"
                input_param { shape { dim: 3 dim: 2 dim: 4 } shape { dim: 3 dim: 2 dim: 4 } } }
        layer { name: "shift" type: "Bias" bottom: "x" top: "b"
                bias_param { filler { type: "gaussian" } } }
        layer { name: "bn" type: "BatchNorm" bottom: "b" top: "TOP" }
    """
    if loss:
        text += 'layer { name: "loss" type: "EuclideanLoss" bottom: "TOP" bottom: "t" }'
    rng = np.random.default_rng(6)
    x, t = rng.uniform(-1, 1, (3, 2, 4)), rng.uniform(-1, 1, (3, 2, 4))
    nets = []
    for top in ("y", "b"):   # out of place (the reference), in place
        common.set_random_seed(2)
        with common.using_mode(common.CPU):
            net = Net(text_format.Parse(text.replace("TOP", top), caffe_pb2.NetParameter()), TRAIN)
            net.blobs["x"].data, net.blobs["t"].data = x, t
            net.forward_backward() if loss else net.forward()
        nets.append(net)
    reference, in_place = nets
    bn = in_place.layer_dict["bn"]
    assert bn.backward_may_need(0) is loss
    y = reference.blobs["y"].data
    np.testing.assert_allclose(in_place.blobs["b"].data, y, rtol=1e-6)
    np.testing.assert_allclose(y.mean(axis=(0, 2)), 0, atol=1e-6)
    np.testing.assert_array_equal(bn.x_norm.data, y if loss else 0)   # the copy, or none
    for mine, theirs in zip(bn.blobs, reference.params["bn"]):
        np.testing.assert_allclose(mine.data, theirs.data, rtol=1e-6)
    if loss:   # the shift's gradient flows through BatchNorm's backward
        mine, theirs = in_place.params["shift"][0].diff, reference.params["shift"][0].diff
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-7)
        assert theirs.any()


# ---- the OpenCL twin
@pytest.mark.opencl
@given(shape=shapes.filter(lambda s: np.prod(s) <= 200), seed=st.integers(0, 2**31 - 1),
       use_global_stats=st.booleans())
def test_engines_agree(shape, seed, use_global_stats):
    rng = np.random.default_rng(seed)
    c = shape[1] if len(shape) > 1 else 1
    stats = [rng.uniform(-2, 2, c), rng.uniform(0, 3, c), [rng.choice([0.0, 1.7])]]
    param = layer_param("BatchNorm", batch_norm_param={"use_global_stats": use_global_stats})
    compare_engines(param, [spread(shape, seed)], params=stats, seed=seed, atol=1e-4)


@pytest.mark.opencl
@pytest.mark.parametrize("shape", [(2, 3, 30, 30), (5, 1, 3)])
def test_engines_agree_on_long_channels_and_running_statistics(shape):
    # (2, 3, 30, 30): many work-items share each channel's sums. Both engines must
    # leave the same running statistics after two passes.
    x = np.random.default_rng(2).normal(1, 2, shape).astype(np.float32)
    running = []
    for engine in (common.CPU, common.GPU):
        with common.using_mode(engine):
            layer = batch_norm(moving_average_fraction=0.9)
            bottom, top = run(layer, x)
            layer.forward([bottom], [top])
            running.append([b.data.copy() for b in layer.blobs])
    np.testing.assert_allclose(running[0][2], [1.9], rtol=1e-6)
    for cpu, gpu in zip(*running):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-5)
    compare_engines(layer_param("BatchNorm"), [x], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("phase", [TRAIN, TEST])
@pytest.mark.parametrize("in_place", [False, True])
def test_data_stays_on_the_device(gpu_only, phase, in_place):
    layer, bottom = batch_norm(phase), blob_from(np.random.default_rng(0).normal(size=(2, 3, 4)))
    top = bottom if in_place else Blob()
    layer.setup([bottom], [top])
    for blob in [bottom] + layer.blobs:
        blob.mutable_gpu_data()
    top.mutable_gpu_diff()
    before = dict(SyncedMemory.transfers)
    layer.forward([bottom], [top])
    layer.backward([top], [True], [bottom])
    assert SyncedMemory.transfers == before


# ---- bad input
def test_bad_input(mode):
    with pytest.raises(MinicaffeError, match="BatchNorm layer 'bn': bottom .* is a scalar"):
        run(create_layer(layer_param("BatchNorm", "bn")), np.float32(1))
    layer, top = batch_norm(), Blob()
    layer.setup([blob_from(X)], [top])
    with pytest.raises(MinicaffeError, match=r"has 3 channels on axis 1; the layer was set up for 2"):
        layer.forward([Blob(2, 3, 2)], [top])
    param = layer_param("BatchNorm", "bn")
    param.blobs.add().CopyFrom(blob_from([0.0, 0.0]).to_proto())
    with pytest.raises(MinicaffeError, match=r"'bn': expected 3 blobs .* got 1 of \[2\] values"):
        create_layer(param).setup([blob_from(X)], [Blob()])
    with pytest.raises(MinicaffeError, match="takes exactly 1 bottom"):
        batch_norm().setup([blob_from(X), blob_from(X)], [Blob()])


RESNET_BLOCK = """
force_backward: true
layer { name: "in" type: "Input" top: "x" top: "t"
        input_param { shape { dim: 3 dim: 2 dim: 5 dim: 5 } shape { dim: 3 dim: 4 } } }
layer { name: "conv" type: "Convolution" bottom: "x" top: "c"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "bn" type: "BatchNorm" bottom: "c" top: "c" }
layer { name: "sc" type: "Scale" bottom: "c" top: "c"
        scale_param { bias_term: true filler { type: "gaussian" } bias_filler { type: "gaussian" } } }
layer { name: "relu" type: "ReLU" bottom: "c" top: "c" }
layer { name: "ip" type: "InnerProduct" bottom: "c" top: "y"
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "loss" }
"""


@pytest.mark.opencl
def test_engines_agree_in_a_training_net():
    # Conv -> BatchNorm -> Scale -> ReLU, all three in place on one blob as in ResNet,
    # two forward-backward passes: the losses, gradients and running statistics agree.
    results = []
    for engine in (common.CPU, common.GPU):
        with common.using_mode(engine):
            common.set_random_seed(1)
            net = Net(text_format.Parse(RESNET_BLOCK, caffe_pb2.NetParameter()), TRAIN)
            rng = np.random.default_rng(0)
            net.blobs["x"].data = rng.normal(size=(3, 2, 5, 5))
            net.blobs["t"].data = rng.normal(size=(3, 4))
            losses = [net.forward_backward() for _ in range(2)]
            results.append([losses, net.blobs["x"].diff.copy()]
                           + [b.diff.copy() for name in ("conv", "sc") for b in net.params[name]]
                           + [b.data.copy() for b in net.params["bn"]])
    np.testing.assert_allclose(results[0][-1], [1.999], rtol=1e-6)   # w = 0.999 * 1 + 1
    for cpu, gpu in zip(*results):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-5)
