"""ONNX export (minicaffe/onnx_export.py, `minicaffe export_onnx`): every model-zoo deploy
net and every exportable layer, with its awkward settings, computes in onnxruntime what
minicaffe's numpy engine computes.

The comparison is blob by blob, not only at the outputs: the export can expose any blob
(`net_to_onnx(net, outputs=...)`), and each must agree to 1e-4 of its largest magnitude
(float32 sums taken in another order), as the engines must in tests/test_model_zoo.py.
A Softmax at the end would hide much of a difference in the layers below it. onnxruntime
is the independent side: its kernels are its own, written from ONNX's specification.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from hypothesis import assume, given
from hypothesis import strategies as st

from minicaffe import cli
from minicaffe.common import MinicaffeError
from minicaffe.net import TEST, Net
from minicaffe.proto import caffe_pb2
from minicaffe.testing import zoo
from tests.test_model_zoo import DEPLOY_NETS
from tests.zoo import CAFFE_MODELS, require_caffe_models

onnx = pytest.importorskip("onnx", reason="needs onnx: pip install 'minicaffe[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install 'minicaffe[onnx]'")

from minicaffe.onnx_export import net_to_onnx  # noqa: E402  (after the skips)

REPO = Path(__file__).resolve().parents[1]
# The zoo nets that run in CI (a few seconds in all); the ImageNet-sized rest is `slow`.
FAST = {"examples/mnist/lenet.prototxt", "examples/siamese/mnist_siamese.prototxt",
        "examples/cifar10/cifar10_quick.prototxt", "examples/cifar10/cifar10_full.prototxt",
        "examples/net_surgery/conv.prototxt", "models/squeezenet_v1.0/deploy.prototxt",
        "models/squeezenet_v1.1/deploy.prototxt",
        "models/bvlc_googlenet/deploy.prototxt"}


def session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def compare(net, rng, what: str, blobs=None, feeds=None) -> dict[str, float]:
    """Run `net` (weights filled) on uniform inputs (or `feeds`, by input name) in
    minicaffe and, exported, in onnxruntime; every blob (or those named) must agree to
    1e-4 of its largest magnitude. Returns each blob's max |difference| / max |value|."""
    feeds = {name: rng.uniform(-1, 1, net.blobs[name].shape).astype(np.float32)
             for name in net.inputs} | (feeds or {})
    net.forward(**feeds)
    names = list(blobs or net.blobs)  # an input blob too: layers may work in place on it
    model = net_to_onnx(net, outputs=names)
    onnx.checker.check_model(model, full_check=True)
    theirs = session(model).run(None, feeds)
    ratios = {}
    for name, value in zip(names, theirs):
        ours = net.blobs[name].data
        assert value.shape == ours.shape, f"{what}: blob {name!r} shape"
        assert np.all(np.isfinite(ours)), f"{what}: blob {name!r} is not finite"
        scale = max(float(np.abs(ours).max(initial=0)), 1e-30)
        np.testing.assert_allclose(value, ours, rtol=0, atol=1e-4 * scale,
                                   err_msg=f"{what}: blob {name!r}")
        ratios[name] = float(np.abs(value - ours).max(initial=0)) / scale
    return ratios


# ---------------------------------------------------------------- the model zoo

@pytest.mark.parametrize("path", [pytest.param(p, marks=() if p in FAST else pytest.mark.slow)
                                  for p in DEPLOY_NETS])
def test_zoo_deploy_net_exports_and_onnxruntime_agrees(path):
    require_caffe_models()
    net = Net(zoo.at_batch_one(CAFFE_MODELS / path), TEST)
    rng = np.random.default_rng(0)
    zoo.draw_weights(net, rng)
    compare(net, rng, path)
    # And the graph's own outputs, under their Caffe names, are the net's outputs.
    model = net_to_onnx(net)
    assert [o.name for o in model.graph.output] == net.outputs
    assert [i.name for i in model.graph.input] == net.inputs


# ---------------------------------------------------------------- layer by layer

def net_of(body: str, shape=(2, 3, 9, 11), inputs=("data",)) -> Net:
    """A TEST net: Input layer(s) of `shape`, then the layers in `body` (prototxt)."""
    dims = " ".join(f"dim: {d}" for d in shape)
    head = "".join(f'layer {{ name: "in_{i}" type: "Input" top: "{i}" '
                   f"input_param {{ shape {{ {dims} }} }} }}\n" for i in inputs)
    param = text_format.Parse(head + body, caffe_pb2.NetParameter())
    return Net(param, TEST)


def fill(net, rng) -> None:
    """Parameters of moderate size; BatchNorm statistics that need Caffe's scale factor."""
    for name, blobs in net.params.items():
        if net.layer_dict[name].type == "BatchNorm":
            factor = 2.5
            blobs[0].data[...] = rng.normal(0, 1, blobs[0].shape) * factor
            blobs[1].data[...] = rng.uniform(0.2, 2, blobs[1].shape) * factor
            blobs[2].data[...] = factor
            continue
        for blob in blobs:
            blob.data[...] = rng.normal(0, 0.5, blob.shape)


def check(body, shape=(2, 3, 9, 11), inputs=("data",), seed=0, feeds=None):
    net = net_of(body, shape, inputs)
    rng = np.random.default_rng(seed)
    fill(net, rng)
    return compare(net, rng, body, feeds=feeds)


CONV = 'layer {{ name: "c" type: "{kind}" bottom: "data" top: "c" convolution_param {{ {p} }} }}'


@pytest.mark.parametrize("kind, p", [
    ("Convolution", "num_output: 4 kernel_size: 3"),
    ("Convolution", "num_output: 6 kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 2 "
                    "group: 3 bias_term: false"),
    ("Convolution", "num_output: 3 kernel_size: 3 dilation: 2 pad: 2 stride: 2 group: 3"),
    ("Deconvolution", "num_output: 4 kernel_size: 3 stride: 2 pad: 1"),
    ("Deconvolution", "num_output: 6 kernel_h: 4 kernel_w: 3 stride_h: 3 stride_w: 2 pad_h: 2 "
                      "pad_w: 0 group: 3 dilation: 2 bias_term: false"),
])
def test_convolution_and_deconvolution(kind, p):
    check(CONV.format(kind=kind, p=p))


POOL = ('layer {{ name: "p" type: "Pooling" bottom: "data" top: "p" '
        'pooling_param {{ pool: {pool} {p} }} }}')


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
@pytest.mark.parametrize("p", [
    "kernel_size: 3 stride: 2",                  # CEIL: the last window hangs over the edge
    "kernel_size: 3 stride: 2 pad: 1",           # ... and over the padding (AVE's divisor)
    "kernel_size: 2 stride: 2 pad: 1",           # the last window would start in the padding
    "kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 pad_h: 2 pad_w: 1",
    "kernel_size: 3 stride: 2 pad: 1 round_mode: FLOOR",
    "global_pooling: true",
])
def test_pooling_edges(pool, p):
    check(POOL.format(pool=pool, p=p), shape=(2, 3, 9, 11))


@given(size=st.tuples(st.integers(1, 12), st.integers(1, 12)),
       kernel=st.tuples(st.integers(1, 5), st.integers(1, 5)),
       stride=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       pad=st.tuples(st.integers(0, 4), st.integers(0, 4)),
       pool=st.sampled_from(["MAX", "AVE"]), floor=st.booleans())
def test_pooling_any_geometry_exports_exactly_or_says_why_not(size, kernel, stride, pad, pool,
                                                               floor):
    """Exported pooling agrees with Caffe's wherever every window holds an image pixel;
    where some window holds none (no padding, a stride beyond the kernel) the export
    refuses, naming the layer."""
    assume(pad[0] < kernel[0] and pad[1] < kernel[1])
    p = (f"kernel_h: {kernel[0]} kernel_w: {kernel[1]} stride_h: {stride[0]} stride_w: "
         f"{stride[1]} pad_h: {pad[0]} pad_w: {pad[1]}" + (" round_mode: FLOOR" if floor else ""))
    body = POOL.format(pool=pool, p=p)
    try:
        net = net_of(body, shape=(1, 2, *size))
    except MinicaffeError:
        assume(False)  # the kernel does not fit: nothing to export
    layer = net.layer_dict["p"]
    empty_window = layer.hstart[-1] >= size[0] or layer.wstart[-1] >= size[1]
    if empty_window:
        with pytest.raises(MinicaffeError, match="layer 'p' \\(Pooling\\).*without any image pixel"):
            net_to_onnx(net)
    else:
        compare(net, np.random.default_rng(1), body)


def test_pooling_with_a_window_outside_the_image_is_refused():
    # 9 rows, kernel 2, stride 3, CEIL: windows start at rows 0, 3, 6 and 9, the last one
    # wholly below the image (Caffe gives it -FLT_MAX, or 0 for AVE).
    net = net_of(POOL.format(pool="MAX", p="kernel_size: 2 stride: 3"), shape=(1, 1, 9, 9))
    assert net.blobs["p"].shape == (1, 1, 4, 4)
    with pytest.raises(MinicaffeError, match="layer 'p' \\(Pooling\\): windows of kernel \\(2, 2\\), "
                                             "stride \\(3, 3\\), pad \\(0, 0\\) over a 9x9 image"):
        net_to_onnx(net)


@pytest.mark.parametrize("p", ["local_size: 5 alpha: 0.0001 beta: 0.75",
                               "local_size: 3 alpha: 2 beta: 0.6 k: 2.5",
                               "local_size: 5 alpha: 3 beta: 0.75 norm_region: WITHIN_CHANNEL",
                               "local_size: 3 alpha: 1.5 beta: 0.5 k: 7 norm_region: WITHIN_CHANNEL"])
def test_lrn(p):
    # Large alphas: with AlexNet's 1e-4 the normalisation hardly moves x, and a mistake
    # in how alpha is divided by the window would go unseen.
    ratios = check(f'layer {{ name: "n" type: "LRN" bottom: "data" top: "n" lrn_param {{ {p} }} }}',
                   shape=(2, 7, 5, 6))
    assert ratios["n"] < 1e-5


def test_lrn_alpha_convention_is_caffes():
    """ONNX's LRN divides alpha by size, like Caffe: the known answer for one pixel."""
    net = net_of('layer { name: "n" type: "LRN" bottom: "data" top: "n" '
                 'lrn_param { local_size: 3 alpha: 3 beta: 1 k: 1 } }', shape=(1, 3, 1, 1))
    x = np.array([1, 2, 3], np.float32).reshape(1, 3, 1, 1)
    (y,) = session(net_to_onnx(net)).run(None, {"data": x})
    # channel 0 sees 0, 1, 2: s = 1 + 3/3 (0 + 1 + 4) = 6, y = 1/6
    np.testing.assert_allclose(y.ravel(), [1 / 6, 2 / (1 + 14), 3 / (1 + 13)], rtol=1e-6)


def test_inner_product_axis_and_transpose():
    check('layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
          'inner_product_param { num_output: 5 axis: 2 } }\n'
          'layer { name: "ipt" type: "InnerProduct" bottom: "ip" top: "ipt" '
          'inner_product_param { num_output: 4 transpose: true } }')


@pytest.mark.parametrize("p", ["operation: SUM", "operation: SUM coeff: 0.5 coeff: -2 coeff: 1",
                               "operation: PROD", "operation: MAX"])
def test_eltwise(p):
    check(f'layer {{ name: "e" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "e" '
          f'eltwise_param {{ {p} }} }}', inputs=("a", "b", "c"))


@pytest.mark.parametrize("global_stats", ["", "batch_norm_param { use_global_stats: false }"])
def test_batch_norm_and_scale(global_stats):
    check(f'layer {{ name: "bn" type: "BatchNorm" bottom: "data" top: "data" {global_stats} }}\n'
          'layer { name: "sc" type: "Scale" bottom: "data" top: "data" scale_param { bias_term: true } }\n'
          'layer { name: "r" type: "ReLU" bottom: "data" top: "data" }')


def test_scale_and_bias_by_a_second_bottom_and_over_several_axes():
    # Scale/Bias by a second bottom that spans axes 0..1 of a (2, 3, 4, 5) input.
    net = Net(text_format.Parse(
        'layer { name: "in" type: "Input" top: "a" top: "b" input_param { '
        '  shape { dim: 2 dim: 3 dim: 4 dim: 5 } shape { dim: 2 dim: 3 } } }\n'
        'layer { name: "s1" type: "Scale" bottom: "a" bottom: "b" top: "s1" '
        '        scale_param { axis: 0 bias_term: true } }\n'
        'layer { name: "s2" type: "Scale" bottom: "s1" top: "s2" scale_param { axis: 1 num_axes: 2 } }\n'
        'layer { name: "b1" type: "Bias" bottom: "s2" top: "b1" bias_param { num_axes: 0 } }\n'
        'layer { name: "b2" type: "Bias" bottom: "b1" bottom: "b" top: "b2" bias_param { axis: 0 } }',
        caffe_pb2.NetParameter()), TEST)
    rng = np.random.default_rng(3)
    fill(net, rng)
    compare(net, rng, "scale and bias")


def test_softmax_and_concat_on_other_axes():
    check('layer { name: "s" type: "Softmax" bottom: "a" top: "s" softmax_param { axis: 2 } }\n'
          'layer { name: "c" type: "Concat" bottom: "s" bottom: "b" top: "c" concat_param { axis: 3 } }\n'
          'layer { name: "f" type: "Flatten" bottom: "c" top: "f" flatten_param { axis: 2 } }\n'
          'layer { name: "r" type: "Reshape" bottom: "f" top: "r" '
          '        reshape_param { shape { dim: 0 dim: -1 dim: 2 } } }',
          shape=(2, 3, 4, 6), inputs=("a", "b"))


@pytest.mark.parametrize("layer", [
    'type: "ReLU" relu_param { negative_slope: 0.1 }', 'type: "PReLU"',
    'type: "PReLU" prelu_param { channel_shared: true }', 'type: "ELU" elu_param { alpha: 0.7 }',
    'type: "Sigmoid"', 'type: "TanH"', 'type: "AbsVal"', 'type: "BNLL"',
    'type: "Power" power_param { power: 2 scale: 0.5 shift: 3 }',
    'type: "Power" power_param { power: 0 scale: 2 }', 'type: "Power" power_param { shift: 1 }',
    'type: "Exp" exp_param { base: 2 scale: 0.5 shift: 1 }', 'type: "Exp"',
    'type: "Log" log_param { base: 10 scale: 0.5 shift: 2 }',
    'type: "Threshold" threshold_param { threshold: 0.2 }',
    'type: "Clip" clip_param { min: -0.3 max: 0.5 }', 'type: "Swish" swish_param { beta: 1.5 }',
    'type: "Dropout" dropout_param { dropout_ratio: 0.3 }',
])
def test_neuron_layers(layer):
    # Not in place, then in place where the layer can be: both forms of the same layer.
    second = "z" if "AbsVal" in layer else "y"  # |x| cannot run in place (its backward)
    check(f'layer {{ name: "n1" {layer} bottom: "data" top: "y" }}\n'
          f'layer {{ name: "n2" {layer} bottom: "y" top: "{second}" }}', shape=(2, 3, 4, 5))


@pytest.mark.parametrize("layer", [
    'type: "Slice" bottom: "data" top: "y2" slice_param { axis: 3 slice_point: 2 }',
    'type: "Slice" bottom: "data" top: "y2" top: "y3" slice_param { slice_dim: 1 }',
    'type: "Slice" bottom: "data"',
    'type: "Tile" bottom: "data" tile_param { axis: 1 tiles: 3 }',
    'type: "Tile" bottom: "data" tile_param { axis: -1 tiles: 2 }',
    'type: "Reduction" bottom: "data"',
    'type: "Reduction" bottom: "data" reduction_param { operation: ASUM axis: 2 coeff: -0.5 }',
    'type: "Reduction" bottom: "data" reduction_param { operation: SUMSQ axis: -1 }',
    'type: "Reduction" bottom: "data" reduction_param { operation: MEAN axis: 0 coeff: 3 }',
    'type: "MVN" bottom: "data"',
    'type: "MVN" bottom: "data" mvn_param { normalize_variance: false }',
    'type: "MVN" bottom: "data" mvn_param { across_channels: true eps: 0.01 }',
    'type: "Im2col" bottom: "data" convolution_param { kernel_size: 3 }',
    'type: "Im2col" bottom: "data" convolution_param { kernel_h: 2 kernel_w: 3 stride: 2 pad: 1 dilation: 2 }',
    'type: "SPP" bottom: "data" spp_param { pyramid_height: 1 }',
    'type: "SPP" bottom: "data" spp_param { pyramid_height: 3 }',
    'type: "SPP" bottom: "data" spp_param { pyramid_height: 2 pool: AVE }',
])
def test_shape_and_statistics_layers(layer):
    check(f'layer {{ name: "l" {layer} top: "y" }}', shape=(2, 3, 6, 7))


def input_layer(name: str, *dims: int) -> str:
    """An Input layer with one top, `name`, of shape `dims` (prototxt)."""
    shape = " ".join(f"dim: {d}" for d in dims)
    return f'layer {{ name: "in_{name}" type: "Input" top: "{name}" input_param {{ shape {{ {shape} }} }} }}\n'


@pytest.mark.parametrize("ref, p", [((2, 3, 4, 2), "axis: 2 offset: 1 offset: 4"),
                                    ((2, 1, 4, 7), "axis: 1 offset: 2"), ((2, 3, 6, 7), "")])
def test_crop_reads_the_shape_of_its_second_bottom(ref, p):
    net = net_of(input_layer("ref", *ref) + 'layer { name: "c" type: "Crop" bottom: "data" bottom: "ref" '
                 f'top: "c" crop_param {{ {p} }} }}', shape=(2, 3, 6, 9))
    compare(net, np.random.default_rng(0), "crop")


@pytest.mark.parametrize("p", ["", "top_k: 3", "out_max_val: true", "top_k: 2 out_max_val: true",
                               "axis: 1", "axis: -1 top_k: 3", "axis: 2 top_k: 2 out_max_val: true"])
def test_argmax_ranks_ties_as_caffe_does(p):
    # Values from a handful of levels, so that many are equal: Caffe puts the later
    # position first, the opposite of TopK's rule.
    x = np.random.default_rng(1).integers(-2, 3, (2, 3, 4, 5)).astype(np.float32)
    check(f'layer {{ name: "a" type: "ArgMax" bottom: "data" top: "a" argmax_param {{ {p} }} }}',
          shape=(2, 3, 4, 5), feeds={"data": x})


@pytest.mark.parametrize("bias", ["true", "false"])
def test_embed_looks_up_rows(bias):
    ids = np.array([[3, 0, 6], [6, 1, 2]], np.float32)
    check(f'layer {{ name: "e" type: "Embed" bottom: "data" top: "e" '
          f'embed_param {{ num_output: 4 input_dim: 7 bias_term: {bias} }} }}',
          shape=ids.shape, feeds={"data": ids})


def test_batch_reindex_and_parameter():
    net = net_of(input_layer("idx", 5) +
                 'layer { name: "br" type: "BatchReindex" bottom: "data" bottom: "idx" top: "br" }\n'
                 'layer { name: "p" type: "Parameter" top: "p" '
                 '        parameter_param { shape { dim: 5 dim: 3 dim: 2 dim: 2 } } }\n'
                 'layer { name: "sum" type: "Eltwise" bottom: "br" bottom: "p" top: "sum" }', shape=(3, 3, 2, 2))
    rng = np.random.default_rng(0)
    fill(net, rng)
    compare(net, rng, "reindex", feeds={"idx": np.array([2, 0, 2, 1, 0], np.float32)})


def test_lstm_unit_one_step():
    net = net_of(input_layer("x", 1, 3, 8) + input_layer("cont", 1, 3) +
                 'layer { name: "u" type: "LSTMUnit" bottom: "data" bottom: "x" bottom: "cont" top: "c" top: "h" }',
                 shape=(1, 3, 2))
    rng = np.random.default_rng(0)
    compare(net, rng, "lstm unit", feeds={"x": rng.uniform(-3, 3, (1, 3, 8)).astype(np.float32),
                                          "cont": np.array([[1, 0, 1]], np.float32)})


def recurrent_net(kind: str, p: str = "", static: bool = False):
    """A `kind` (RNN or LSTM) layer over x (T=4, N=3, 2) and cont; `p` goes into recurrent_param."""
    exposed = "expose_hidden: true" in p
    states = ["h0", "c0"] if kind == "LSTM" else ["h0"]
    extra = ("x_static",) if static else ()
    extra += tuple(states) if exposed else ()
    shapes = {"cont": (4, 3), "x_static": (3, 6), "h0": (1, 3, 5), "c0": (1, 3, 5)}
    head = "".join(input_layer(b, *shapes[b]) for b in ("cont",) + extra)
    bottoms = "".join(f' bottom: "{b}"' for b in ("data", "cont") + extra)
    tops = ' top: "y"' + ("".join(f' top: "{s}_T"' for s in states) if exposed else "")
    net = net_of(head + f'layer {{ name: "r" type: "{kind}"{bottoms}{tops} recurrent_param {{ '
                 f'num_output: 5 weight_filler {{ type: "uniform" min: -0.5 max: 0.5 }} {p} }} }}',
                 shape=(4, 3, 2))
    fill(net, np.random.default_rng(0))
    return net


@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
@pytest.mark.parametrize("p, static", [("", False), ("expose_hidden: true", False), ("", True),
                                       ("expose_hidden: true", True)])
def test_recurrent_layers_export_their_unrolled_net(kind, p, static):
    # Streams 0 and 2 go on from the initial state (an exposed one, or zero in a fresh
    # net), stream 1 starts afresh; later, new sequences start in streams 0 and 2.
    cont = np.array([[1, 0, 1], [1, 1, 1], [0, 1, 1], [1, 1, 0]], np.float32)
    net = recurrent_net(kind, p, static)
    # Without expose_hidden the graph starts from a zero state, as a fresh net does.
    compare(net, np.random.default_rng(1), kind, feeds={"cont": cont})
    # The four steps share the layer's weights: each is stored once.
    stored = [onnx.numpy_helper.to_array(t) for t in net_to_onnx(net).graph.initializer]
    for blob in net.layer_dict["r"].blobs:
        assert sum(a.shape == blob.shape and np.array_equal(a, blob.data) for a in stored) == 1


def test_recurrent_state_carried_between_forwards_is_not_exported():
    # The documented difference: a net that has run forward once carries its last state
    # into the next call, where the ONNX graph starts from zero again; a sequence that
    # starts at step 1 (cont = 0) forgets the carried state, and both agree.
    net = recurrent_net("LSTM")
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (4, 3, 2)).astype(np.float32)
    fresh = np.array([[0, 0, 0]] + [[1, 1, 1]] * 3, np.float32)
    carried = np.ones((4, 3), np.float32)
    model = net_to_onnx(net)
    for cont, same in ((carried, True), (fresh, True), (carried, False)):
        ours = net.forward(data=x, cont=cont)["y"].copy()  # the first call starts from zero
        (theirs,) = session(model).run(None, {"data": x, "cont": cont})
        assert np.allclose(ours, theirs, atol=1e-5) == same


# ---------------------------------------------------------------- naming

def test_in_place_writes_get_their_own_values_and_outputs_keep_caffe_names():
    net = net_of('layer { name: "relu0" type: "ReLU" bottom: "data" top: "data" }\n'
                 'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
                 '        convolution_param { num_output: 2 kernel_size: 1 } }\n'
                 'layer { name: "relu1" type: "ReLU" bottom: "conv" top: "conv" '
                 '        relu_param { negative_slope: 0.5 } }\n'
                 'layer { name: "drop" type: "Dropout" bottom: "conv" top: "out" }', shape=(1, 2, 3, 3))
    fill(net, np.random.default_rng(0))
    model = net_to_onnx(net)
    assert [i.name for i in model.graph.input] == ["data"]
    assert [o.name for o in model.graph.output] == ["out"]
    outputs = [list(n.output) for n in model.graph.node]
    assert outputs == [["data/relu0"], ["conv/conv"], ["conv"], ["out"]]  # out: an Identity
    x = np.random.default_rng(1).uniform(-1, 1, (1, 2, 3, 3)).astype(np.float32)
    (y,) = session(model).run(None, {"data": x})
    np.testing.assert_allclose(y, net.forward(data=x)["out"], rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- what cannot be exported

def test_unsupported_layers_are_all_named_with_their_types():
    net = net_of('layer { name: "sel" type: "Input" top: "sel" input_param { shape { dim: 2 } } }\n'
                 'layer { name: "mvn" type: "MVN" bottom: "data" top: "mvn" }\n'
                 'layer { name: "sto" type: "Pooling" bottom: "mvn" top: "sto" '
                 '        pooling_param { pool: STOCHASTIC kernel_size: 2 } }\n'
                 'layer { name: "ip" type: "InnerProduct" bottom: "sto" top: "ip" '
                 '        inner_product_param { num_output: 3 } }\n'
                 'layer { name: "filter" type: "Filter" bottom: "ip" bottom: "sel" top: "kept" }\n'
                 'layer { name: "loss" type: "EuclideanLoss" bottom: "mvn" bottom: "data" top: "loss" }',
                 shape=(2, 3, 4, 4))
    net.blobs["sel"].data[...] = [1, 0]
    with pytest.raises(MinicaffeError) as err:
        net_to_onnx(net)
    message = str(err.value)
    assert "3 layer(s)" in message
    for fragment in ("'sto' (Pooling): pool: STOCHASTIC", "'filter' (Filter): the number of items",
                     "'loss' (EuclideanLoss): a training/scoring layer"):
        assert fragment in message
    assert "'mvn'" not in message  # MVN is fine
    assert "'ip'" not in message  # InnerProduct is fine


def test_every_layer_type_exports_or_has_a_reason_of_its_own():
    from minicaffe.layer import layer_registry
    from minicaffe.onnx_export import _why_not, supported_types

    generic = _why_not("NoSuchType")
    without = {kind: _why_not(kind) for kind in layer_registry() if kind not in supported_types()}
    assert all(reason != generic for reason in without.values()), without
    # Inference layers among them would be a gap in the export, not a limit of ONNX.
    assert set(without) == {"Accuracy", "ContrastiveLoss", "Data", "DistillationLoss", "DummyData",
                            "EuclideanLoss", "Filter", "HDF5Data", "HDF5Output", "HingeLoss",
                            "ImageData", "InfogainLoss", "MemoryData",
                            "MultinomialLogisticLoss", "Python", "SigmoidCrossEntropyLoss",
                            "SoftmaxWithLoss", "WindowData"}


# ---------------------------------------------------------------- the command

DEPLOY = """name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 8 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 3 kernel_size: 3 } }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "relu" type: "ReLU" bottom: "pool" top: "pool" }
layer { name: "ip" type: "InnerProduct" bottom: "pool" top: "ip" inner_product_param { num_output: 4 } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""


@pytest.fixture
def deploy(tmp_path):
    (tmp_path / "deploy.prototxt").write_text(DEPLOY)
    net = Net(str(tmp_path / "deploy.prototxt"), TEST)
    fill(net, np.random.default_rng(5))
    net.save(str(tmp_path / "w.caffemodel"))
    return tmp_path


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


def test_command_round_trip(deploy):
    out = deploy / "m.onnx"
    env = {"PYTHONPATH": str(REPO), "GLOG_minloglevel": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "minicaffe", "export_onnx", "--model",
                           str(deploy / "deploy.prototxt"), "--weights", str(deploy / "w.caffemodel"),
                           "--output", str(out)], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert [o.name for o in model.graph.output] == ["prob"]
    net = Net(str(deploy / "deploy.prototxt"), str(deploy / "w.caffemodel"), TEST)
    x = np.random.default_rng(2).uniform(0, 1, (1, 1, 8, 8)).astype(np.float32)
    (prob,) = session(model).run(None, {"data": x})
    ours = net.forward(data=x)["prob"]
    np.testing.assert_allclose(prob, ours, rtol=0, atol=1e-6)
    assert not np.allclose(ours, 0.25, atol=1e-3)  # the trained weights, not a uniform guess
    assert [p.name for p in deploy.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_command_errors_are_one_paragraph(deploy, capsys, monkeypatch):
    model, weights = str(deploy / "deploy.prototxt"), str(deploy / "w.caffemodel")
    code, err = run_cli(capsys, "export_onnx", "--model", model, "--output", str(deploy / "m.onnx"))
    assert code == 1 and "minicaffe: error: Need the trained weights" in err and "Traceback" not in err
    code, err = run_cli(capsys, "export_onnx", "--model", model, "--weights", weights,
                        "--output", str(deploy / "nowhere" / "m.onnx"))
    assert code == 1 and "does not exist" in err and "Traceback" not in err

    (deploy / "stochastic.prototxt").write_text(DEPLOY.replace("pool: MAX", "pool: STOCHASTIC"))
    code, err = run_cli(capsys, "export_onnx", "--model", str(deploy / "stochastic.prototxt"),
                        "--weights", weights, "--output", str(deploy / "m.onnx"))
    assert code == 1 and "layer 'pool' (Pooling): pool: STOCHASTIC" in err and "Traceback" not in err
    assert not (deploy / "m.onnx").exists()

    monkeypatch.setitem(sys.modules, "onnx", None)  # as if onnx were not installed
    code, err = run_cli(capsys, "export_onnx", "--model", model, "--weights", weights,
                        "--output", str(deploy / "m.onnx"))
    assert code == 1 and err.strip().splitlines()[-1] == (
        "minicaffe: error: ONNX export needs the onnx package, which is not installed: "
        "pip install 'minicaffe[onnx]'")
