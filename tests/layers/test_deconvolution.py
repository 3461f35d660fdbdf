"""Deconvolution: known answers (by hand and Caffe's overlap count), the adjoint of
Convolution (forward, backward and the weight gradient), gradients (Caffe's checker:
stepsize 1e-2, threshold 1e-3), the OpenCL twin against numpy, bad input.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.layers.deconvolution import DeconvolutionLayer
from minicaffe.syncedmem import SyncedMemory
from minicaffe.testing import GradientChecker
from minicaffe.testing.engines import compare_engines
from tests.strategies import blob_from, layer_param

GAUSSIAN = {"weight_filler": {"type": "gaussian"}, "bias_filler": {"type": "gaussian"}}


def make(type_name="Deconvolution", **fields):
    return create_layer(layer_param(type_name, type_name.lower(),
                                    convolution_param={**GAUSSIAN, **fields}))


def setup(layer, *bottoms):
    tops = [Blob() for _ in bottoms]
    layer.setup(list(bottoms), tops)
    return tops


# ---- known answers
X22 = np.float32([[1, 2], [3, 4]]).reshape(1, 1, 2, 2)
W22 = np.float32([[1, 2], [3, 4]]).reshape(1, 1, 2, 2)


@pytest.mark.parametrize("fields, expected", [
    # Stride 1: each x[q] adds x[q] * w into the 2x2 window at q, so y is the full
    # (unflipped) 2-D convolution of x with w: y[1,1] = 1*4 + 2*3 + 3*2 + 4*1 = 20.
    ({"kernel_size": [2]}, [[1, 4, 4], [6, 20, 16], [9, 24, 16]]),
    # Stride 2: the windows do not overlap; each 2x2 block is x[q] * w.
    ({"kernel_size": [2], "stride": [2]}, [[1, 2, 2, 4], [3, 4, 6, 8],
                                          [3, 6, 4, 8], [9, 12, 12, 16]]),
    # pad 1 crops one pixel from each side of the stride-1 result: 1*(2-1) + 2 - 2 = 1.
    ({"kernel_size": [2], "pad": [1]}, [[20]]),
    # dilation 2: taps 2 apart, extent 3; windows at 0 and 1 interleave, top 1 + 3 = 4.
    ({"kernel_size": [2], "dilation": [2]}, [[1, 2, 2, 4], [3, 4, 6, 8],
                                            [3, 6, 4, 8], [9, 12, 12, 16]]),
    # 2-D forms: stride 1 down, 2 across.
    ({"kernel_h": 2, "kernel_w": 2, "stride_h": 1, "stride_w": 2},
     [[1, 2, 2, 4], [6, 10, 10, 16], [9, 12, 12, 16]]),
])
def test_known_answer(mode, fields, expected):
    layer = make(num_output=1, bias_term=False, **fields)
    bottom = blob_from(X22)
    top = setup(layer, bottom)
    layer.blobs[0].data = W22
    layer.forward([bottom], top)
    np.testing.assert_array_equal(top[0].data[0, 0], expected)


def test_known_answer_caffe_overlaps(mode):
    # Caffe's TestSimpleDeconvolution: ones in, weights 1, bias 0.1, kernel 3, stride 2.
    # Top row h is reached by the bottom rows q with 2q <= h <= 2q + 2: two of them
    # where h is even and inside, else one; likewise columns. Each of the 3 channels
    # adds 1 per (row, column) pair, so y = 0.1 + 3 * rows(h) * cols(w).
    bottoms = [blob_from(np.ones((2, 3, 3, 2))) for _ in range(2)]
    layer = make(num_output=4, kernel_size=[3], stride=[2],
                 weight_filler={"type": "constant", "value": 1},
                 bias_filler={"type": "constant", "value": 0.1})
    tops = setup(layer, *bottoms)
    layer.forward(bottoms, tops)
    h, w = np.arange(7), np.arange(5)
    rows = np.where((h % 2 == 0) & (h > 0) & (h < 6), 2, 1)
    cols = np.where((w % 2 == 0) & (w > 0) & (w < 4), 2, 1)
    expected = 0.1 + 3 * rows[:, None] * cols[None, :]
    for top in tops:
        assert top.shape == (2, 4, 7, 5)
        np.testing.assert_allclose(top.data, np.broadcast_to(expected, (2, 4, 7, 5)), atol=1e-5)


def test_setup_shapes(mode):
    # Caffe's TestSetup: (2, 3, 6, 4), kernel 3, stride 2 -> 2*(6-1)+3 = 13 by 2*(4-1)+3 = 9.
    layer = make(num_output=4, kernel_size=[3], stride=[2])
    tops = setup(layer, Blob(2, 3, 6, 4), Blob(2, 3, 6, 4))
    assert [t.shape for t in tops] == [(2, 4, 13, 9)] * 2
    assert layer.blobs[0].shape == (3, 4, 3, 3) and layer.blobs[1].shape == (4,)
    # Groups change the weight (bottom channels, num_output / group, ...), not the top.
    layer = make(num_output=3, kernel_size=[3], stride=[2], group=3)
    assert setup(layer, Blob(2, 3, 6, 4))[0].shape == (2, 3, 13, 9)
    assert layer.blobs[0].shape == (3, 1, 3, 3)


# ---- the adjoint of Convolution
@st.composite
def deconv_cases(draw, max_axes=2, max_side=3):
    """(bottom shape, convolution_param fields, seed) for a valid Deconvolution."""
    d = draw(st.integers(1, max_axes))
    group = draw(st.integers(1, 2))
    channels, num_output = group * draw(st.integers(1, 2)), group * draw(st.integers(1, 2))
    kernel = [draw(st.integers(1, 3)) for _ in range(d)]
    dilation = [draw(st.integers(1, 2)) for _ in range(d)]
    stride = [draw(st.integers(1, 3)) for _ in range(d)]
    pad = [draw(st.integers(0, 1)) for _ in range(d)]
    # The top s(S-1) + extent - 2p must be at least 1.
    smallest = [max(1, 1 - (r * (k - 1) - 2 * p) // s)
                for k, r, s, p in zip(kernel, dilation, stride, pad)]
    spatial = [draw(st.integers(low, max(low, max_side))) for low in smallest]
    fields = {"num_output": num_output, "group": group, "kernel_size": kernel, "pad": pad,
              "stride": stride, "dilation": dilation, "bias_term": draw(st.booleans())}
    return (draw(st.integers(1, 2)), channels, *spatial), fields, draw(st.integers(0, 2**31 - 1))


def check_adjoint(shape, fields, seed):
    """With the same weights and no bias, <conv(y), x> = <y, deconv(x)> for all x, y; and
    backward is forward's adjoint: deconv's bottom diff for top diff y is conv(y), its
    weight gradient that of the convolution of y with top diff x. Returns the layer."""
    fields = {**fields, "bias_term": False}
    rng = np.random.default_rng(seed)
    x = blob_from(rng.uniform(-1, 1, shape))
    deconv = make(**fields)
    top = setup(deconv, x)[0]
    deconv.forward([x], [top])
    y = blob_from(rng.uniform(-1, 1, top.shape))
    conv = make("Convolution", **{**fields, "num_output": shape[1]})
    conv_top = setup(conv, y)[0]
    conv.blobs[0].data = deconv.blobs[0].data
    conv.forward([y], [conv_top])
    assert conv_top.shape == x.shape
    inner = conv_top.data.astype(np.float64) * x.data
    assert abs(inner.sum() - (y.data.astype(np.float64) * top.data).sum()) \
        <= 1e-5 * (np.abs(inner).sum() + 1)

    top.diff = y.data
    deconv.backward([top], [True], [x])
    np.testing.assert_allclose(x.diff, conv_top.data, rtol=1e-5, atol=1e-5)
    conv_top.diff = x.data
    conv.backward([conv_top], [False], [y])
    np.testing.assert_allclose(deconv.blobs[0].diff, conv.blobs[0].diff, rtol=1e-5, atol=1e-5)
    return deconv


@given(case=deconv_cases(max_axes=3))
def test_adjoint_of_convolution(mode, case):
    check_adjoint(*case)


# Both host column layouts (base_conv.py's _batch_last): a wide bottom plane keeps
# Caffe's per-image layout, a small one under many kernel rows puts the batch last.
@pytest.mark.parametrize("batch_last, shape, fields", [
    (False, (2, 1, 6, 5), {"num_output": 2, "kernel_size": [2], "stride": [2]}),
    (True, (3, 4, 2, 2), {"num_output": 4, "kernel_size": [3, 2], "group": 2, "pad": [1]}),
])
def test_adjoint_in_both_layouts(mode, batch_last, shape, fields):
    assert check_adjoint(shape, fields, seed=3).batch_last == batch_last


# ---- gradients, Caffe's settings
def test_gradient_exhaustive(mode):
    # Caffe's TestGradient (kernel 2, stride 1, one output), on a smaller bottom.
    bottom = blob_from(np.random.default_rng(5).normal(size=(1, 2, 2, 2)))
    layer = make(num_output=1, kernel_size=[2], stride=[1])
    GradientChecker(1e-2, 1e-3).check_gradient_exhaustive(layer, [bottom], [Blob()])


def test_gradient_two_bottoms_3d(mode):
    # Caffe's TestGradient3D: kernel 2, stride 2, pad 1, two outputs, two bottoms that
    # share the weights (their gradients add up), on (1, 3, 2, 3, 2).
    rng = np.random.default_rng(6)
    bottoms = [blob_from(rng.normal(size=(1, 3, 2, 3, 2))) for _ in range(2)]
    layer = make(num_output=2, kernel_size=[2], stride=[2], pad=[1])
    GradientChecker(1e-2, 1e-3).check_gradient(layer, bottoms, [Blob(), Blob()])


@given(case=deconv_cases(max_axes=2))
def test_gradient(mode, case):
    shape, fields, seed = case
    bottom = blob_from(np.random.default_rng(seed).uniform(-1, 1, shape))
    GradientChecker(1e-2, 1e-3).check_gradient(make(**fields), [bottom], [Blob()])


def test_weight_and_bias_gradients_accumulate(mode):
    bottom = blob_from(np.random.default_rng(1).uniform(-1, 1, (2, 3, 3, 3)))
    layer = make(num_output=2, kernel_size=[3], stride=[2])
    top = setup(layer, bottom)
    layer.forward([bottom], top)
    top[0].diff = np.random.default_rng(2).uniform(-1, 1, top[0].shape)
    layer.backward(top, [True], [bottom])
    once = [b.diff.copy() for b in layer.blobs] + [bottom.diff.copy()]
    layer.backward(top, [True], [bottom])
    np.testing.assert_allclose(layer.blobs[0].diff, 2 * once[0], rtol=1e-6)
    np.testing.assert_allclose(layer.blobs[1].diff, 2 * once[1], rtol=1e-6)
    np.testing.assert_array_equal(bottom.diff, once[2])  # the bottom diff is overwritten


def test_propagate_down_flags(mode):
    # Without the weight gradient, backward still builds the top diff's columns itself.
    bottom = blob_from(np.random.default_rng(1).uniform(-1, 1, (2, 2, 3, 3)))
    layer = make(num_output=2, kernel_size=[2])
    top = setup(layer, bottom)
    layer.forward([bottom], top)
    top[0].diff = 1.0
    layer.backward(top, [True], [bottom])
    full = bottom.diff.copy()
    bottom.diff = 7.0
    for blob in layer.blobs:
        blob.diff = 0.0
    layer.param_propagate_down = [False, True]
    layer.backward(top, [False], [bottom])
    assert np.all(bottom.diff == 7.0) and not layer.blobs[0].diff.any()
    np.testing.assert_allclose(layer.blobs[1].diff, [2 * 16, 2 * 16])  # ones over N, 4 x 4
    layer.backward(top, [True], [bottom])
    np.testing.assert_allclose(bottom.diff, full, rtol=1e-6)


# ---- the OpenCL twin
@st.composite
def engine_cases(draw):
    """deconv_cases(), with 2-D geometry sometimes in the _h/_w fields or forced through
    the n-d kernels, and a propagate_down flag."""
    shape, fields, seed = draw(deconv_cases(max_axes=3, max_side=4))
    if len(shape) == 4 and draw(st.booleans()):
        for name in ("kernel", "pad", "stride"):
            values = fields.pop("kernel_size" if name == "kernel" else name)
            fields[f"{name}_h"], fields[f"{name}_w"] = values
    if len(shape) == 4:
        fields["force_nd_im2col"] = draw(st.booleans())
    return shape, fields, seed, draw(st.booleans())


@given(engine_cases())
def test_engines_agree(gpu_only, case):
    shape, fields, seed, propagate = case
    x = np.random.default_rng(seed).uniform(-1, 1, shape)
    param = layer_param("Deconvolution", "deconv", convolution_param={**GAUSSIAN, **fields})
    compare_engines(param, [x], propagate_down=[propagate])


def test_engines_agree_two_bottoms_in_chunks(gpu_only, monkeypatch):
    # Column buffers for only 2 of the 5 images: the device does the batch in chunks
    # of 2, 2 and 1 images. Two bottoms share the weights; their gradients add up.
    # A deconvolution's columns are the top's: (4 * 3 * 3) rows by 3 x 3 bottom pixels.
    monkeypatch.setattr(DeconvolutionLayer, "DEVICE_COL_LIMIT", 2 * 4 * 3 * 3 * 3 * 3)
    rng = np.random.default_rng(11)
    param = layer_param("Deconvolution", "deconv", convolution_param={
        **GAUSSIAN, "num_output": 4, "kernel_size": [3], "stride": [2], "pad": [1]})
    compare_engines(param, [rng.uniform(-1, 1, (5, 3, 3, 3)) for _ in range(2)], top_count=2)


@pytest.mark.parametrize("nd", [False, True])
def test_data_stays_on_the_device(gpu_only, nd):
    # With the bottom data and the top diff only on the device (as between layers of a
    # net), forward and backward copy nothing either way: a host read would be counted.
    layer = make(num_output=4, kernel_size=[3], pad=[1], stride=[2], group=2, force_nd_im2col=nd)
    bottom = blob_from(np.random.default_rng(0).uniform(-1, 1, (3, 2, 4, 3)))
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
    # 1*(1-1) + 1 - 2*1 = -1: nothing left of the top
    ({"num_output": 1, "kernel_size": [1], "pad": [1]}, (1, 1, 1, 3), "the padding is too large"),
    ({"num_output": 2, "kernel_size": [3], "group": 2}, (1, 3, 2, 2), "not divisible by group 2"),
    ({"num_output": 3, "kernel_size": [3], "group": 2}, (1, 4, 2, 2), "num_output 3 is not divisible"),
    ({"kernel_size": [3]}, (1, 1, 2, 2), "num_output must be specified"),
    ({"num_output": 1}, (1, 1, 2, 2), "kernel_size .* must be specified"),
    ({"num_output": 1, "kernel_size": [3, 3, 3]}, (1, 1, 2, 2), "once per spatial axis"),
    ({"num_output": 1, "kernel_size": [2], "stride": [0]}, (1, 1, 2, 2), "stride must be positive"),
])
def test_bad_input(mode, fields, shape, message):
    layer = create_layer(layer_param("Deconvolution", "baddeconv", convolution_param=fields))
    with pytest.raises(MinicaffeError, match=message) as err:
        setup(layer, Blob(shape))
    assert "Deconvolution layer 'baddeconv'" in str(err.value)


def test_bad_bottoms(mode):
    layer = make(num_output=1, kernel_size=[2])
    with pytest.raises(MinicaffeError, match="Deconvolution layer 'deconvolution'.*one shape"):
        setup(layer, Blob(1, 2, 3, 3), Blob(1, 2, 3, 2))
    top = setup(layer, Blob(1, 2, 3, 3))
    with pytest.raises(MinicaffeError, match="'deconvolution'.*3 channels, the weights expect 2"):
        layer.forward([Blob(1, 3, 3, 3)], top)
