"""Convolution: known answers, a plain-loop reference over drawn geometries, gradients
(Caffe's checker: stepsize 1e-2, threshold 1e-3), shared weights, accumulation, the
OpenCL twin against numpy, bad input.
"""
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.layers.convolution import ConvolutionLayer
from minicaffe.syncedmem import SyncedMemory
from minicaffe.testing import GradientChecker
from minicaffe.testing.engines import compare_engines
from tests.strategies import blob_from, layer_param


def conv(**fields):
    fields.setdefault("weight_filler", {"type": "gaussian"})
    fields.setdefault("bias_filler", {"type": "gaussian"})
    return create_layer(layer_param("Convolution", "conv", convolution_param=fields))


def setup(layer, *bottoms):
    tops = [Blob() for _ in bottoms]
    layer.setup(list(bottoms), tops)
    return tops


def run(layer, *bottoms):
    tops = setup(layer, *bottoms)
    layer.forward(list(bottoms), tops)
    return tops


def reference_conv(x, w, b, pad, stride, dilation, group):
    """y[n, o, q] = b[o] + sum over c in o's group and kernel offsets i of w[o, c, i] x_pad[...]."""
    n, channels, *spatial = x.shape
    num_output, cg, *kernel = w.shape
    out = [(s + 2 * p - (r * (k - 1) + 1)) // st + 1
           for s, k, p, st, r in zip(spatial, kernel, pad, stride, dilation)]
    y = np.zeros((n, num_output, *out))
    og = num_output // group
    for img, o in itertools.product(range(n), range(num_output)):
        g = o // og
        for q in itertools.product(*(range(v) for v in out)):
            total = b[o] if b is not None else 0.0
            for c in range(cg):
                for i in itertools.product(*(range(k) for k in kernel)):
                    src = [qq * s + ii * r - p for qq, s, ii, r, p in zip(q, stride, i, dilation, pad)]
                    if all(0 <= v < size for v, size in zip(src, spatial)):
                        total += float(w[(o, c, *i)]) * float(x[(img, g * cg + c, *src)])
            y[(img, o, *q)] = total
    return y


def set_params(layer, w, b=None):
    layer.blobs[0].data = w
    if b is not None:
        layer.blobs[1].data = b


# ---- known answers, by hand
X33 = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)   # [[1 2 3] [4 5 6] [7 8 9]]
W22 = np.array([[1, 2], [3, 4]], dtype=np.float32).reshape(1, 1, 2, 2)


@pytest.mark.parametrize("fields, expected", [
    # Before the bias 0.5: y[0,0] = 1*1 + 2*2 + 3*4 + 4*5 = 37, and so on.
    ({"kernel_size": [2]}, [[37, 47], [67, 77]]),
    # pad 1, stride 2: windows start at -1 and 1; (0,0) sees only x=1 under w=4
    ({"kernel_size": [2], "pad": [1], "stride": [2]}, [[4, 18], [36, 77]]),
    # dilation 2: one window on the corners, 1*1 + 3*2 + 7*3 + 9*4 = 64
    ({"kernel_size": [2], "dilation": [2]}, [[64]]),
    # 2-D forms: kernel 2x2 as kernel_h/kernel_w, stride 1x2 as stride_h/stride_w
    ({"kernel_h": 2, "kernel_w": 2, "stride_h": 1, "stride_w": 2}, [[37], [67]]),
    # pad_h only: the first row of windows sees x's top row under w's bottom row (3, 4),
    # the last sees x's bottom row under w's top row (1, 2).
    ({"kernel_size": [2], "pad_h": 1, "pad_w": 0}, [[1 * 3 + 2 * 4, 2 * 3 + 3 * 4], [37, 47],
                                                   [67, 77], [7 * 1 + 8 * 2, 8 * 1 + 9 * 2]]),
])
def test_known_answer(mode, fields, expected):
    layer = conv(num_output=1, **fields)
    bottom = blob_from(X33)
    top = setup(layer, bottom)
    set_params(layer, W22, [0.5])
    layer.forward([bottom], top)
    np.testing.assert_array_equal(top[0].data[0, 0], np.add(expected, 0.5))


def test_known_answer_groups(mode):
    # Two groups: output 0 sees channel 0 only, output 1 channel 1 only.
    x = np.stack([X33[0, 0], 10 * X33[0, 0]])[None]
    layer = conv(num_output=2, kernel_size=[2], group=2, bias_term=False)
    top = setup(layer, blob_from(x))
    set_params(layer, np.concatenate([W22, -W22]))
    layer.forward([blob_from(x)], top)
    np.testing.assert_array_equal(top[0].data[0], [[[37, 47], [67, 77]], [[-370, -470], [-670, -770]]])


# ---- drawn geometries against the plain-loop reference
@st.composite
def conv_cases(draw, max_axes=2, max_side=6):
    d = draw(st.integers(1, max_axes))
    group = draw(st.integers(1, 3))
    channels, num_output = group * draw(st.integers(1, 2)), group * draw(st.integers(1, 2))
    kernel = [draw(st.integers(1, 3)) for _ in range(d)]
    dilation = [draw(st.integers(1, 2)) for _ in range(d)]
    pad = [draw(st.integers(0, 2)) for _ in range(d)]
    stride = [draw(st.integers(1, 3)) for _ in range(d)]
    smallest = [max(1, r * (k - 1) + 1 - 2 * p) for k, r, p in zip(kernel, dilation, pad)]
    spatial = [draw(st.integers(low, max(low, max_side))) for low in smallest]
    num = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    bias = draw(st.booleans())

    def once_or_per_axis(values):
        return values[:1] if len(set(values)) == 1 and draw(st.booleans()) else values
    fields = {"num_output": num_output, "group": group, "bias_term": bias,
              "kernel_size": once_or_per_axis(kernel), "pad": once_or_per_axis(pad),
              "stride": once_or_per_axis(stride), "dilation": once_or_per_axis(dilation)}
    return (num, channels, *spatial), fields, (kernel, pad, stride, dilation), seed


@given(case=conv_cases(max_axes=3, max_side=5))
def test_forward_matches_reference(mode, case):
    shape, fields, (kernel, pad, stride, dilation), seed = case
    x = np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)
    layer = conv(**fields)
    top = run(layer, blob_from(x))[0]
    b = layer.blobs[1].data if fields["bias_term"] else None
    expected = reference_conv(x, layer.blobs[0].data, b, pad, stride, dilation, fields["group"])
    assert top.shape == expected.shape and top.data.dtype == np.float32
    np.testing.assert_allclose(top.data, expected, rtol=1e-4, atol=1e-4)


# Both column layouts, by shape: a wide output plane keeps Caffe's per-image layout,
# a small plane under many channels puts the batch last.
LAYOUTS = {False: ((2, 1, 9, 8), {"num_output": 2, "kernel_size": [2]}),
           True: ((3, 4, 4, 3), {"num_output": 4, "kernel_size": [3, 2], "group": 2, "pad": [1]})}


@pytest.mark.parametrize("batch_last", [False, True])
def test_both_layouts_match_reference(mode, batch_last):
    shape, fields = LAYOUTS[batch_last]
    x = np.random.default_rng(3).uniform(-1, 1, shape).astype(np.float32)
    layer = conv(**fields)
    top = run(layer, blob_from(x))[0]
    assert layer.batch_last == batch_last
    pad = fields.get("pad", [0]) * 2
    expected = reference_conv(x, layer.blobs[0].data, layer.blobs[1].data, pad, (1, 1), (1, 1),
                              fields.get("group", 1))
    np.testing.assert_allclose(top.data, expected, rtol=1e-4, atol=1e-4)


# ---- gradients, Caffe's settings
# Smaller bottoms than LAYOUTS' that still pick each layout: the exhaustive check runs
# two forwards per (top value, input value) pair.
EXHAUSTIVE_SHAPES = {False: (2, 1, 5, 4), True: (2, 4, 2, 2)}


@pytest.mark.parametrize("batch_last", [False, True])
def test_gradient_exhaustive(mode, batch_last):
    _, fields = LAYOUTS[batch_last]
    shape = EXHAUSTIVE_SHAPES[batch_last]
    bottom = blob_from(np.random.default_rng(5).uniform(-1, 1, shape))
    layer = conv(**fields)
    GradientChecker(1e-2, 1e-3).check_gradient_exhaustive(layer, [bottom], [Blob()])
    assert layer.batch_last == batch_last


@given(case=conv_cases(max_axes=2, max_side=4))
def test_gradient(mode, case):
    shape, fields, _, seed = case
    bottom = blob_from(np.random.default_rng(seed).uniform(-1, 1, shape))
    GradientChecker(1e-2, 1e-3).check_gradient(conv(**fields), [bottom], [Blob()])


def test_gradient_two_bottoms_and_3d(mode):
    # Two bottoms share the weights; their gradients add up. 3-D kernel, stride and pad.
    rng = np.random.default_rng(7)
    bottoms = [blob_from(rng.uniform(-1, 1, (1, 2, 3, 4, 3))) for _ in range(2)]
    layer = conv(num_output=2, kernel_size=[2, 3, 2], pad=[1, 0, 1], stride=[2, 1, 1])
    GradientChecker(1e-2, 1e-3).check_gradient(layer, bottoms, [Blob(), Blob()])


# ---- properties
def test_weight_and_bias_gradients_accumulate(mode):
    bottom = blob_from(np.random.default_rng(1).uniform(-1, 1, (2, 3, 5, 5)))
    layer = conv(num_output=4, kernel_size=[3])
    top = run(layer, bottom)
    top[0].diff = np.random.default_rng(2).uniform(-1, 1, top[0].shape)
    layer.backward(top, [True], [bottom])
    once = [b.diff.copy() for b in layer.blobs] + [bottom.diff.copy()]
    layer.backward(top, [True], [bottom])
    np.testing.assert_allclose(layer.blobs[0].diff, 2 * once[0], rtol=1e-6)
    np.testing.assert_allclose(layer.blobs[1].diff, 2 * once[1], rtol=1e-6)
    np.testing.assert_array_equal(bottom.diff, once[2])   # bottom diff is overwritten


def test_propagate_down_flags(mode):
    bottom = blob_from(np.random.default_rng(1).uniform(-1, 1, (2, 2, 4, 4)))
    layer = conv(num_output=2, kernel_size=[2])
    top = run(layer, bottom)
    top[0].diff = 1.0
    bottom.diff = 7.0
    layer.param_propagate_down = [False, True]
    layer.backward(top, [False], [bottom])
    assert np.all(bottom.diff == 7.0) and np.all(layer.blobs[0].diff == 0)
    np.testing.assert_allclose(layer.blobs[1].diff, [2 * 9, 2 * 9])  # sum of ones over N, H', W'


def test_axis_folds_leading_axes(mode):
    # axis 2: shape (2, 3, C, H, W) behaves as a batch of 6 images.
    x = np.random.default_rng(4).uniform(-1, 1, (2, 3, 2, 5, 4)).astype(np.float32)
    folded = create_layer(layer_param("Convolution", "c", convolution_param={
        "num_output": 3, "kernel_size": [2], "axis": 2, "weight_filler": {"type": "gaussian"}}))
    top = run(folded, blob_from(x))[0]
    assert top.shape == (2, 3, 3, 4, 3)
    plain = conv(num_output=3, kernel_size=[2])
    plain_top = setup(plain, blob_from(x.reshape(6, 2, 5, 4)))
    set_params(plain, folded.blobs[0].data, folded.blobs[1].data)
    plain.forward([blob_from(x.reshape(6, 2, 5, 4))], plain_top)
    np.testing.assert_array_equal(top.data.reshape(6, 3, 4, 3), plain_top[0].data)


def test_default_fillers_are_zero_and_given_blobs_are_kept(mode):
    param = layer_param("Convolution", "c", convolution_param={"num_output": 2, "kernel_size": [3]})
    layer = create_layer(param)
    setup(layer, Blob(1, 3, 4, 4))
    assert layer.blobs[0].shape == (2, 3, 3, 3) and layer.blobs[1].shape == (2,)
    assert not layer.blobs[0].data.any() and not layer.blobs[1].data.any()
    weights = np.random.default_rng(0).normal(size=(2, 3, 3, 3)).astype(np.float32)
    param.blobs.add().CopyFrom(blob_from(weights).to_proto())
    param.blobs.add().CopyFrom(blob_from([1.0, 2.0]).to_proto())
    layer = create_layer(param)
    setup(layer, Blob(1, 3, 4, 4))
    np.testing.assert_array_equal(layer.blobs[0].data, weights)


def test_reshape_to_a_new_batch(mode):
    layer = conv(num_output=2, kernel_size=[3])
    x = np.random.default_rng(0).uniform(-1, 1, (4, 1, 6, 6)).astype(np.float32)
    bottom = blob_from(x[:1])
    top = setup(layer, bottom)
    bottom.reshape(4, 1, 6, 6)
    bottom.data = x
    layer.forward([bottom], top)
    expected = reference_conv(x, layer.blobs[0].data, layer.blobs[1].data, (0, 0), (1, 1), (1, 1), 1)
    np.testing.assert_allclose(top[0].data, expected, rtol=1e-4, atol=1e-4)


# ---- the OpenCL twin
@st.composite
def engine_cases(draw):
    """conv_cases(), with 2-D geometry sometimes in the _h/_w fields or forced through
    the n-d kernels, and a propagate_down flag."""
    shape, fields, _, seed = draw(conv_cases(max_axes=3, max_side=6))
    if len(shape) == 4 and draw(st.booleans()):
        for name in ("kernel", "pad", "stride"):
            values = fields.pop("kernel_size" if name == "kernel" else name)
            fields[f"{name}_h"], fields[f"{name}_w"] = values * (2 // len(values))
    if len(shape) == 4:
        fields["force_nd_im2col"] = draw(st.booleans())
    return shape, fields, seed, draw(st.booleans())


@given(engine_cases())
def test_engines_agree(gpu_only, case):
    shape, fields, seed, propagate = case
    x = np.random.default_rng(seed).uniform(-1, 1, shape)
    param = layer_param("Convolution", "conv", convolution_param={
        **fields, "weight_filler": {"type": "gaussian"}, "bias_filler": {"type": "gaussian"}})
    compare_engines(param, [x], propagate_down=[propagate])


def test_engines_agree_two_bottoms_in_chunks(gpu_only, monkeypatch):
    # A column buffer for only 2 of the 5 images: the device does the batch in chunks
    # of 2, 2 and 1 images. Two bottoms share the weights; their gradients add up.
    monkeypatch.setattr(ConvolutionLayer, "DEVICE_COL_LIMIT", 2 * 3 * 3 * 3 * 4 * 4)
    rng = np.random.default_rng(11)
    param = layer_param("Convolution", "conv", convolution_param={
        "num_output": 4, "kernel_size": [3], "pad": [1], "group": 1,
        "weight_filler": {"type": "gaussian"}, "bias_filler": {"type": "gaussian"}})
    compare_engines(param, [rng.uniform(-1, 1, (5, 3, 4, 4)) for _ in range(2)], top_count=2)


@pytest.mark.parametrize("nd", [False, True])
def test_data_stays_on_the_device(gpu_only, nd):
    # With the bottom data and the top diff only on the device (as between layers of a
    # net), forward and backward copy nothing either way: a host read would be counted.
    layer = conv(num_output=4, kernel_size=[3], pad=[1], stride=[2], group=2,
                 force_nd_im2col=nd)
    bottom = blob_from(np.random.default_rng(0).uniform(-1, 1, (3, 2, 7, 6)))
    top = setup(layer, bottom)[0]
    bottom.mutable_gpu_data()
    top.mutable_gpu_diff()
    for blob in layer.blobs:
        blob.mutable_gpu_data()
        blob.mutable_gpu_diff()
    before = dict(SyncedMemory.transfers)
    layer.forward([bottom], [top])
    layer.backward([top], [True], [bottom])
    assert SyncedMemory.transfers == before


# ---- bad input
@pytest.mark.parametrize("fields, shape, message", [
    ({"num_output": 2, "kernel_size": [5]}, (1, 1, 4, 4), "larger than the padded input"),
    ({"num_output": 2, "kernel_size": [3], "group": 2}, (1, 3, 4, 4), "not divisible by group 2"),
    ({"num_output": 3, "kernel_size": [3], "group": 2}, (1, 4, 4, 4), "num_output 3 is not divisible"),
    ({"kernel_size": [3]}, (1, 1, 4, 4), "num_output must be specified"),
    ({"num_output": 1}, (1, 1, 4, 4), "kernel_size .* must be specified"),
    ({"num_output": 1, "kernel_size": [3], "kernel_h": 3, "kernel_w": 3}, (1, 1, 4, 4), "not both"),
    ({"num_output": 1, "kernel_size": [3, 3, 3]}, (1, 1, 4, 4), "once per spatial axis"),
    ({"num_output": 1, "kernel_h": 2, "kernel_w": 2}, (1, 1, 4, 4, 4), "only be used for 2-D"),
    ({"num_output": 1, "kernel_size": [2], "stride": [0]}, (1, 1, 4, 4), "stride must be positive"),
])
def test_bad_input(mode, fields, shape, message):
    layer = create_layer(layer_param("Convolution", "badconv", convolution_param=fields))
    with pytest.raises(MinicaffeError, match=message) as err:
        setup(layer, Blob(shape))
    assert "'badconv'" in str(err.value) and "Convolution" in str(err.value)


def test_bad_bottom_after_setup(mode):
    layer = create_layer(layer_param("Convolution", "badconv",
                                     convolution_param={"num_output": 1, "kernel_size": [2]}))
    top = setup(layer, Blob(1, 2, 4, 4))
    with pytest.raises(MinicaffeError, match="'badconv'.*3 channels, the weights expect 2"):
        layer.forward([Blob(1, 3, 4, 4)], top)
    with pytest.raises(MinicaffeError, match="'badconv'.*larger than the padded input"):
        layer.forward([Blob(1, 2, 1, 4)], top)
