"""Scale: hand-computed products along an axis, the scale as a parameter or a second
bottom, bias_term and Caffe's blob layout, gradients (Caffe's checker: stepsize 1e-2,
threshold 1e-3, exhaustive), in-place use, accumulation, the OpenCL twin against numpy,
bad input."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from google.protobuf import text_format

from minicaffe import TEST, TRAIN, Net, common
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer
from minicaffe.proto import caffe_pb2
from minicaffe.syncedmem import SyncedMemory
from minicaffe.testing import GradientChecker
from minicaffe.testing.engines import compare_engines
from tests.strategies import blob_from, layer_param


def scale(**fields):
    return create_layer(layer_param("Scale", scale_param=fields))


def test_known_answer_learned_scale_and_bias(mode):
    # x of shape (2, 3, 2), per-channel s = (1, 2, -1) and b = (0, 10, 100):
    # y = s[c] x + b[c]; ds[c] = sum of dy x over n and the last axis; db[c] = sum of dy.
    x = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    layer, bottom, top = scale(bias_term=True), blob_from(x), Blob()
    layer.setup([bottom], [top])
    assert [b.shape for b in layer.blobs] == [(3,), (3,)]       # Caffe's order: scale, bias
    np.testing.assert_array_equal(layer.blobs[0].data, [1, 1, 1])  # default filler: 1
    np.testing.assert_array_equal(layer.blobs[1].data, [0, 0, 0])  # default bias filler: 0
    layer.blobs[0].data = [1, 2, -1]
    layer.blobs[1].data = [0, 10, 100]
    layer.forward([bottom], [top])
    np.testing.assert_array_equal(top.data, [[[0, 1], [14, 16], [96, 95]],
                                             [[6, 7], [26, 28], [90, 89]]])
    top.diff = np.ones((2, 3, 2))
    layer.backward([top], [True], [bottom])
    # channel 0 sums x = 0+1+6+7, channel 1: 2+3+8+9, channel 2: 4+5+10+11
    np.testing.assert_array_equal(layer.blobs[0].diff, [14, 22, 30])
    np.testing.assert_array_equal(layer.blobs[1].diff, [4, 4, 4])
    np.testing.assert_array_equal(bottom.diff, np.ones((2, 3, 2)) * [[[1], [2], [-1]]])
    layer.backward([top], [True], [bottom])   # parameter gradients accumulate
    np.testing.assert_array_equal(layer.blobs[0].diff, [28, 44, 60])
    np.testing.assert_array_equal(layer.blobs[1].diff, [8, 8, 8])


def test_known_answer_second_bottom_with_bias(mode):
    # The scale is bottom 1, shape (3,) at axis 1; the bias is then the only blob.
    x = np.float32([[1, 2, 3], [4, 5, 6]])
    s = np.float32([2, 0, -1])
    layer, bottoms, top = scale(bias_term=True), [blob_from(x), blob_from(s)], Blob()
    layer.setup(bottoms, [top])
    assert [b.shape for b in layer.blobs] == [(3,)]
    layer.blobs[0].data = [1, 1, 1]
    layer.forward(bottoms, [top])
    np.testing.assert_array_equal(top.data, [[3, 1, -2], [9, 1, -5]])
    top.diff = [[1, 1, 1], [1, 1, 1]]
    for _ in range(2):  # a bottom's gradient is written, not accumulated
        layer.backward([top], [True, True], bottoms)
    np.testing.assert_array_equal(bottoms[1].diff, [5, 7, 9])
    np.testing.assert_array_equal(bottoms[0].diff, [[2, 0, -1], [2, 0, -1]])
    np.testing.assert_array_equal(layer.blobs[0].diff, [4, 4, 4])  # the bias: 2 per pass, twice


def test_scalar_scale_ignores_axis(mode):
    # num_axes 0: one scale value for everything, whatever the axis.
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    layer = scale(axis=-1, num_axes=0, filler={"type": "constant", "value": 3})
    bottom, top = blob_from(x), Blob()
    layer.setup([bottom], [top])
    layer.forward([bottom], [top])
    assert layer.blobs[0].shape == ()
    np.testing.assert_array_equal(top.data, 3 * x)
    top.diff = np.ones((2, 3))
    layer.backward([top], [True], [bottom])
    np.testing.assert_array_equal(layer.blobs[0].diff, x.sum())


@st.composite
def scale_cases(draw, max_count=12):
    """A bottom shape, an axis, the scale (a parameter, or a second bottom), bias_term."""
    shape = draw(st.lists(st.integers(1, 3), min_size=1, max_size=4).map(tuple)
                 .filter(lambda s: np.prod(s) <= max_count))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    start = axis % len(shape)
    span = draw(st.integers(0, len(shape) - start))
    seed = draw(st.integers(0, 2**31 - 1))
    fields = {"axis": axis, "bias_term": draw(st.booleans()), "bias_filler": {"type": "gaussian"}}
    if draw(st.booleans()):   # a second bottom shaped like `span` axes from `axis`
        return shape, fields, shape[start:start + span], seed
    num_axes = -1 if span == len(shape) - start and draw(st.booleans()) else span
    return shape, {**fields, "num_axes": num_axes, "filler": {"type": "gaussian"}}, None, seed


def bottoms_of(shape, scale_shape, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(-2, 2, shape)]
    if scale_shape is not None:
        arrays.append(rng.uniform(-2, 2, scale_shape))
    return arrays


@given(scale_cases())
def test_gradient(mode, case):
    shape, fields, scale_shape, seed = case
    bottoms = [blob_from(a) for a in bottoms_of(shape, scale_shape, seed)]
    GradientChecker(1e-2, 1e-3).check_gradient_exhaustive(scale(**fields), bottoms, [Blob()])


@given(scale_cases(max_count=60))
def test_matches_broadcast_product(mode, case):
    shape, fields, scale_shape, seed = case
    arrays = bottoms_of(shape, scale_shape, seed)
    layer, bottoms, top = scale(**fields), [blob_from(a) for a in arrays], Blob()
    layer.setup(bottoms, [top])
    layer.forward(bottoms, [top])
    two = scale_shape is not None
    s = (bottoms[1] if two else layer.blobs[0]).data
    assert len(layer.blobs) == (not two) + fields["bias_term"]
    start = fields["axis"] % len(shape) if s.ndim else 0
    pad = (1,) * (len(shape) - start - s.ndim)   # numpy lines up trailing axes
    expected = arrays[0] * s.reshape(s.shape + pad)
    if fields["bias_term"]:
        b = layer.blobs[-1].data
        assert b.shape == s.shape
        expected = expected + b.reshape(b.shape + pad)
    np.testing.assert_allclose(top.data, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bias_term", [False, True])
@pytest.mark.parametrize("two_bottoms", [False, True])
def test_in_place_matches_out_of_place(mode, bias_term, two_bottoms):
    # In place, forward must keep x for the scale's gradient (Caffe's TestBackward*InPlace).
    rng = np.random.default_rng(5)
    x, dy, s = rng.uniform(-1, 1, (2, 3, 4)), rng.uniform(-1, 1, (2, 3, 4)), rng.uniform(-1, 1, 3)
    results = []
    for in_place in (False, True):
        common.set_random_seed(3)
        layer = scale(bias_term=bias_term, filler={"type": "gaussian"},
                      bias_filler={"type": "gaussian"})
        bottoms = [blob_from(x)] + [blob_from(s)] * two_bottoms
        top = bottoms[0] if in_place else Blob()
        layer.setup(bottoms, [top])
        layer.forward(bottoms, [top])
        y = top.data.copy()
        top.diff = dy
        layer.backward([top], [True] * len(bottoms), bottoms)
        results.append([y] + [b.diff.copy() for b in bottoms + layer.blobs])
    for out_of_place, in_place in zip(*results):
        np.testing.assert_allclose(in_place, out_of_place, rtol=1e-6)


def test_given_blobs_and_param_flags(mode):
    # Blobs from the prototxt are used as they are; a missing bias is created (Caffe).
    param = layer_param("Scale", scale_param={"bias_term": True})
    param.blobs.add().CopyFrom(blob_from([2.0, 3.0]).to_proto())
    layer, bottom, top = create_layer(param), blob_from(np.ones((1, 2))), Blob()
    layer.setup([bottom], [top])
    assert [b.shape for b in layer.blobs] == [(2,), (2,)]
    layer.forward([bottom], [top])
    np.testing.assert_array_equal(top.data, [[2, 3]])
    top.diff = [[1, 1]]
    layer.param_propagate_down = [False, True]   # e.g. lr_mult 0 on the scale
    layer.backward([top], [True], [bottom])
    assert not layer.blobs[0].diff.any()
    np.testing.assert_array_equal(layer.blobs[1].diff, [1, 1])


# ---- in place in a Net: the copy of x only when the scale's gradient may be asked
def scale_net(top: str, scale_spec: str = "", loss: bool = True, phase=TRAIN) -> Net:
    """x -> Bias (learned, so x's diff is wanted below the Scale) -> Scale -> loss."""
    text = f"""
        layer {{ name: "in" type: "Input" top: "x" top: "t"
                input_param {{ shape {{ dim: 2 dim: 3 dim: 4 }} shape {{ dim: 2 dim: 3 dim: 4 }} }} }}
        layer {{ name: "shift" type: "Bias" bottom: "x" top: "b"
                bias_param {{ filler {{ type: "gaussian" }} }} }}
        layer {{ name: "sc" type: "Scale" bottom: "b" top: "{top}" {scale_spec}
                scale_param {{ bias_term: true filler {{ type: "gaussian" }}
                              bias_filler {{ type: "gaussian" }} }} }}
    """
    if loss:
        text += f'layer {{ name: "loss" type: "EuclideanLoss" bottom: "{top}" bottom: "t" }}'
    common.set_random_seed(7)
    net = Net(text_format.Parse(text, caffe_pb2.NetParameter()), phase)
    rng = np.random.default_rng(2)
    net.blobs["x"].data = rng.uniform(-1, 1, (2, 3, 4))
    net.blobs["t"].data = rng.uniform(-1, 1, (2, 3, 4))
    return net


@pytest.mark.parametrize("frozen", [False, True])
def test_in_place_in_a_training_net_gets_exact_gradients(mode, frozen):
    # The copy is kept when the scale learns; with lr_mult 0 on it (a frozen Scale, as
    # when fine-tuning a ResNet) no scale gradient is asked, so none is copied, and the
    # other gradients stay exact. Reference: the same net out of place.
    spec = "param { lr_mult: 0 } param { lr_mult: 1 }" if frozen else ""
    nets = [scale_net(top, spec) for top in ("y", "b")]
    for net in nets:
        net.forward_backward()
    reference, in_place = nets
    sc = in_place.layer_dict["sc"]
    assert sc.param_may_need(0) is not frozen
    x = reference.blobs["b"].data
    np.testing.assert_array_equal(sc.temp.data, 0 if frozen else x)   # the copy, or none
    np.testing.assert_allclose(in_place.blobs["b"].data, reference.blobs["y"].data, rtol=1e-6)
    for name in ("sc", "shift"):
        for mine, theirs in zip(in_place.params[name], reference.params[name]):
            np.testing.assert_allclose(mine.diff, theirs.diff, rtol=1e-6)
    np.testing.assert_allclose(in_place.blobs["x"].diff, reference.blobs["x"].diff, rtol=1e-6)
    assert in_place.params["sc"][0].diff.any() is not frozen


@pytest.mark.parametrize("phase", [TRAIN, TEST])
def test_in_place_in_a_deploy_net_copies_nothing(mode, phase):
    # No loss: backward never runs, so the scale's gradient can't be asked even though its
    # lr_mult is 1; forward skips the copy. A backward called anyway (as `minicaffe time`
    # does) computes no scale gradient rather than one from a stale copy.
    net = scale_net("b", loss=False, phase=phase)
    net.forward()
    sc = net.layer_dict["sc"]
    assert sc.param_propagate(0) and not sc.param_may_need(0)
    assert not sc.temp.data.any()
    shift = net.layer_dict["shift"]
    x = net.blobs["x"].data + shift.blobs[0].data.reshape(3, 1)
    s, b = (blob.data.reshape(3, 1) for blob in sc.blobs)
    np.testing.assert_allclose(net.blobs["b"].data, s * x + b, rtol=1e-6)
    record = net.layer_records[net.layer_names.index("sc")]
    net.blobs["b"].diff = 1.0
    sc.backward(record.top_vec, record.bottom_need_backward, record.bottom_vec)
    assert not sc.blobs[0].diff.any()


# ---- the OpenCL twin
@pytest.mark.opencl
@given(scale_cases(max_count=200), st.booleans())
def test_engines_agree(case, propagate):
    shape, fields, scale_shape, seed = case
    arrays = bottoms_of(shape, scale_shape, seed)
    compare_engines(layer_param("Scale", scale_param=fields), arrays,
                    propagate_down=[propagate] + [True] * (len(arrays) - 1), seed=seed)


@pytest.mark.opencl
def test_engines_agree_on_long_sums():
    # 3 scale values of 2 * 700 terms each: several work-items per group share a sum.
    arrays = bottoms_of((2, 3, 700), None, 7)
    compare_engines(layer_param("Scale", scale_param={"bias_term": True, "filler": {"type": "gaussian"}}),
                    arrays, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("in_place", [False, True])
def test_data_stays_on_the_device(gpu_only, in_place):
    layer = scale(bias_term=True, filler={"type": "gaussian"})
    bottom = blob_from(np.ones((2, 3, 4)))
    top = bottom if in_place else Blob()
    layer.setup([bottom], [top])
    for blob in [bottom] + layer.blobs:
        blob.mutable_gpu_data()
        blob.mutable_gpu_diff()
    top.mutable_gpu_diff()
    before = dict(SyncedMemory.transfers)
    layer.forward([bottom], [top])
    layer.backward([top], [True], [bottom])
    assert SyncedMemory.transfers == before


# ---- bad input
@pytest.mark.parametrize("fields, shapes, message", [
    ({"num_axes": -2}, [(2, 3)], "num_axes must be non-negative, or -1"),
    ({"axis": 1, "num_axes": 2}, [(2, 3)], r"scale blob would span 2 axes from axis 1, past the end"),
    ({"axis": -3}, [(2, 3)], "axis -3 out of range"),
    ({"axis": 1}, [(2, 3, 4), (4,)], r"scale of shape \(4,\) does not match .* from axis 1"),
    ({"axis": 0}, [(2, 3), (2, 3, 1)], r"scale of shape \(2, 3, 1\) does not match"),
])
def test_bad_input(mode, fields, shapes, message):
    layer = create_layer(layer_param("Scale", "badscale", scale_param=fields))
    with pytest.raises(MinicaffeError, match=message) as err:
        layer.setup([Blob(s) for s in shapes], [Blob()])
    assert "Scale layer 'badscale'" in str(err.value)


def test_bad_blobs(mode):
    with pytest.raises(MinicaffeError, match="'scale' takes at least 1 bottom"):
        scale().setup([], [Blob()])
    param = layer_param("Scale", scale_param={})   # a scale blob, but the scale is bottom 1
    param.blobs.add().CopyFrom(blob_from([1.0, 2.0, 3.0]).to_proto())
    with pytest.raises(MinicaffeError, match=r"expected 0 parameter blob\(s\) \(none\), got 1"):
        create_layer(param).setup([Blob(2, 3), Blob(3)], [Blob()])
    param = layer_param("Scale", scale_param={"bias_term": True})  # bias shaped unlike the scale
    param.blobs.add().CopyFrom(blob_from([1.0, 2.0, 3.0]).to_proto())
    param.blobs.add().CopyFrom(blob_from([1.0]).to_proto())
    with pytest.raises(MinicaffeError, match=r"bias of shape \(1,\) does not match"):
        create_layer(param).setup([Blob(2, 3)], [Blob()])
