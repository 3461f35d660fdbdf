"""Coordinate maps, checked against the nets themselves.

The maps come from the NetSpec graph alone; the check runs the net. Each test net feeds a
ramp (pixel value = its own column, or row) through layers that reproduce a linear ramp at
the centre of what each output pixel sees: a convolution averaging its window (constant
weights 1/k), average pooling, and a bilinear deconvolution (stride s, kernel 2s, whose
weights sum to one at every interior pixel). So an interior output pixel's value *is* the
input coordinate it lines up with, and `coord_map_from_to` must predict it exactly.
Interior pixels are the ones a border does not reach: where an all-ones input gives 1.
"""
import numpy as np
import pytest

from minicaffe import TEST, Net
from minicaffe.common import MinicaffeError
from minicaffe.coord_map import (AxisMismatchException, compose, coord_map, coord_map_from_to, crop,
                                 inverse)
from minicaffe.net_spec import NetSpec, layers as L, params as P


def ramp_net(size, ks=3, stride=1, pad=0, dilation=1, pool=2, dstride=2, dpad=0, conv=None):
    """Input -> averaging Convolution -> AVE Pooling -> bilinear Deconvolution. `conv` replaces
    the convolution's geometry keywords (to try kernel_h/kernel_w and friends)."""
    kh, kw = (ks, ks) if np.isscalar(ks) else ks
    geometry = conv or dict(kernel_size=ks, stride=stride, pad=pad, dilation=dilation)
    if conv:
        kh, kw = conv["kernel_h"], conv["kernel_w"]
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, size, size]))
    n.conv = L.Convolution(n.data, num_output=1, bias_term=False,
                           weight_filler=dict(type="constant", value=1.0 / (kh * kw)), **geometry)
    n.pool = L.Pooling(n.conv, pooling_param=dict(pool=P.Pooling.AVE, kernel_size=pool, stride=pool))
    # Caffe's rule for a bilinear kernel (BilinearFiller): 2s - s % 2 is centred on its taps
    n.deconv = L.Deconvolution(n.pool, num_output=1, bias_term=False, kernel_size=2 * dstride - dstride % 2,
                               stride=dstride, pad=dpad, weight_filler=dict(type="bilinear"))
    return n


def run(n, image):
    net = Net(n.to_proto(), TEST)
    net.blobs["data"].data[...] = image
    net.forward()
    return net


def check_against_ramps(n, size, top_name):
    """Run ramps along rows and columns; assert the map from `top_name` to the data predicts
    every interior pixel. Returns the number of pixels checked."""
    ones = run(n, np.ones((size, size))).blobs[top_name].data[0, 0]
    interior = np.isclose(ones, 1, atol=1e-5)
    assert interior.sum() >= 4
    axis, scale, offset = coord_map_from_to(getattr(n, top_name), n.data)
    assert axis == 1  # the channel axis; the mapped ones are the two after it
    scale, offset = np.broadcast_to(scale, 2), np.broadcast_to(offset, 2)
    for spatial in (0, 1):
        image = np.indices((size, size))[spatial].astype(np.float32)
        out = run(n, image).blobs[top_name].data[0, 0]
        position = np.indices(out.shape)[spatial]
        predicted = scale[spatial] * position + offset[spatial]
        np.testing.assert_allclose(out[interior], predicted[interior], atol=1e-3)
    return int(interior.sum())


# (size, ramp_net keywords). Each size makes the convolution's output a whole number of pools,
# so no pooling window hangs off the edge (a partial window averages fewer pixels, which an
# all-ones input cannot tell from a whole one).
CROPPABLE = [
    (64, dict()),                                        # the identity: 2x down, 2x up
    (66, dict(pool=4, dstride=4)),                       # off by one pixel
    (60, dict(pad=5)),                                   # padding the convolution shifts the output
    (66, dict(ks=4, stride=2, pool=2, dstride=4)),       # an even kernel, 4x down and up
    (64, dict(ks=3, dilation=3, pad=4, pool=3, dstride=3)),  # dilation; an odd factor
    (64, dict(conv=dict(kernel_h=3, kernel_w=5, pad_h=0, pad_w=2))),  # Caffe's 2-D spellings
]
NOT_CROPPABLE = [
    (64, dict(dpad=3)),                                  # padding the deconvolution shrinks it
    (65, dict(ks=2)),                                    # misaligned by half a pixel
    (64, dict(ks=(3, 5), stride=(1, 2), pad=(0, 4))),    # a different scale per axis
]


@pytest.mark.parametrize("size, kwargs", CROPPABLE + NOT_CROPPABLE)
def test_maps_predict_where_pixels_land(size, kwargs):
    n = ramp_net(size, **kwargs)
    check_against_ramps(n, size, "pool")
    check_against_ramps(n, size, "deconv")


@pytest.mark.parametrize("size, kwargs", CROPPABLE)
def test_crop_cuts_out_the_pixels_that_line_up(size, kwargs):
    n = ramp_net(size, **kwargs)
    _, _, offset = coord_map_from_to(n.deconv, n.data)
    n.crop = crop(n.deconv, n.data)
    crop_param = n.crop.fn.params["crop_param"]
    assert crop_param["axis"] == 2
    assert np.array_equal(np.broadcast_to(crop_param["offset"], 2), -np.broadcast_to(offset, 2))
    ones = run(n, np.ones((size, size)))
    assert ones.blobs["crop"].data.shape == (1, 1, size, size)
    interior = np.isclose(ones.blobs["crop"].data[0, 0], 1, atol=1e-5)
    assert interior.sum() >= size
    for spatial in (0, 1):
        ramp = np.indices((size, size))[spatial].astype(np.float32)
        cropped = run(n, ramp).blobs["crop"].data[0, 0]
        # pixel (i, j) of the crop is pixel (i, j) of the input
        np.testing.assert_allclose(cropped[interior], ramp[interior], atol=1e-3)


def test_crop_offsets_differ_per_axis_when_the_maps_do():
    n = ramp_net(*CROPPABLE[-1][:1], **CROPPABLE[-1][1])
    assert crop(n.deconv, n.data).fn.params["crop_param"]["offset"] == [0, 1]


def test_the_example_offsets():
    # By hand: conv 3 (centre +1), pool 2, deconv 4/2 undo each other exactly;
    # with pool 4 and deconv 8/4 the centres miss by one pixel.
    n = ramp_net(64)
    axis, scale, offset = coord_map_from_to(n.deconv, n.data)
    assert (axis, scale.tolist(), offset.tolist()) == (1, [1.0], [0.0])
    n = ramp_net(66, pool=4, dstride=4)
    axis, scale, offset = coord_map_from_to(n.deconv, n.data)
    assert (axis, scale.tolist(), offset.tolist()) == (1, [1.0], [-1.0])
    assert n.deconv.fn.params["kernel_size"] == 8


def test_elementwise_layers_and_1x1_convolutions_map_nothing():
    n = ramp_net(66, pool=4, dstride=4)
    n.relu = L.ReLU(n.deconv)
    n.bn = L.BatchNorm(n.relu)
    n.onebyone = L.Convolution(n.bn, num_output=1, kernel_size=1)
    expected = coord_map_from_to(n.deconv, n.data)
    for top in (n.relu, n.bn, n.onebyone):
        assert coord_map_from_to(top, n.data) == expected
    assert coord_map(n.relu.fn) == (None, 1, 0)


def test_crop_of_a_crop_adds_its_offset():
    n = ramp_net(64)
    _, scale, offset = coord_map_from_to(n.deconv, n.data)
    n.cropped = L.Crop(n.deconv, n.data, axis=2, offset=3)
    _, scale2, offset2 = coord_map_from_to(n.cropped, n.data)
    assert scale2 == scale and offset2 == offset + 3


def test_every_bottom_of_a_layer_maps_alike():
    n = NetSpec()
    n.a = L.Input(shape=dict(dim=[1, 1, 20, 20]))
    n.b = L.Input(shape=dict(dim=[1, 1, 30, 30]))
    n.ca, n.cb = L.Convolution(n.a, n.b, ntop=2, num_output=1, kernel_size=5, stride=2)
    assert coord_map_from_to(n.ca, n.a) == coord_map_from_to(n.cb, n.b)


def test_nd_convolution_maps_each_axis():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 12, 12, 12]))
    n.conv = L.Convolution(n.data, num_output=1, kernel_size=3, pad=[0, 1, 2], bias_term=False,
                           weight_filler=dict(type="constant", value=1 / 27))
    axis, scale, offset = coord_map_from_to(n.conv, n.data)
    assert axis == 1 and scale.tolist() == [1] and offset.tolist() == [1, 0, -1]
    # the 3-D net agrees: output (i, j, k) averages the input around (i+1, j, k-1)
    net = Net(n.to_proto(), TEST)
    net.blobs["data"].data[...] = 1
    interior = np.isclose(net.forward()["conv"][0, 0], 1, atol=1e-5)  # away from the padded faces
    assert interior.shape == (10, 12, 14) and interior.sum() == 10 * 10 * 10  # pads 0, 1, 2
    for spatial in range(3):
        net.blobs["data"].data[...] = np.indices((12, 12, 12))[spatial]
        out = net.forward()["conv"][0, 0]
        expected = np.indices(out.shape)[spatial] + offset[spatial]
        np.testing.assert_allclose(out[interior], expected[interior], atol=1e-4)


def test_compose_and_inverse():
    f = (1, np.array([0.5]), np.array([-0.25]))
    g = (None, 2, 1.5)
    assert compose(f, g)[0] == 1 and compose(g, f)[0] == 1
    axis, scale, offset = compose(f, inverse(f))
    assert (axis, scale.tolist(), offset.tolist()) == (1, [1.0], [0.0])
    with pytest.raises(AxisMismatchException):
        compose((1, 1, 0), (2, 1, 0))


def test_crop_between_elementwise_layers_only_cuts_nothing():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 5, 5]))
    n.relu = L.ReLU(n.data)
    n.crop = crop(n.relu, n.data)
    assert n.crop.fn.params["crop_param"] == dict(axis=2, offset=[0])
    assert Net(n.to_proto(), TEST).blobs["crop"].data.shape == (1, 1, 5, 5)


# ---------------------------------------------------------------- what cannot be mapped or cropped
def test_unconnected_tops():
    n = ramp_net(64)
    n.ip = L.InnerProduct(n.deconv, num_output=10)
    with pytest.raises(RuntimeError, match="no blob feeds both") as caught:
        coord_map_from_to(n.ip, n.data)
    assert isinstance(caught.value, MinicaffeError)
    n.gp = L.Pooling(n.conv, global_pooling=True)
    with pytest.raises(RuntimeError):
        coord_map_from_to(n.gp, n.data)


@pytest.mark.parametrize("kwargs, words", [
    (dict(pool=3, dstride=2), "resolutions differ"),   # 3x down, 2x up
    (dict(dpad=10), "negative crop offset"),          # the deconvolution comes out smaller
    (dict(ks=2, pad=0), "fraction of a pixel"),       # an even kernel centres between pixels
])
def test_crop_refuses_what_is_no_crop(kwargs, words):
    n = ramp_net(64, **kwargs)
    with pytest.raises(AssertionError, match=words) as caught:
        crop(n.deconv, n.data)
    assert isinstance(caught.value, MinicaffeError)
