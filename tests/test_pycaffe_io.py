"""pycaffe's `caffe.io` in minicaffe.io: BlobProto / Datum conversions, the Transformer,
load_image, resize_image and oversample.

Expected values are written out by hand from the definitions (pixel maths, crop
offsets, interpolation weights), not computed with the code under test.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from minicaffe.common import MinicaffeError
from minicaffe.io import (Transformer, array_to_blobproto, array_to_datum,
                          arraylist_to_blobprotovector_str, blobproto_to_array,
                          blobprotovector_str_to_arraylist, datum_to_array, load_image,
                          oversample, resize_image)
from minicaffe.io.image import encode_image
from minicaffe.proto import caffe_pb2

# Values a float32 holds exactly, so that proto round trips compare with ==.
finite32 = st.floats(-1e6, 1e6, width=32)
small_shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)


# ---------------------------------------------------------------- BlobProto

@given(hnp.arrays(np.float32, small_shapes, elements=finite32), st.booleans())
def test_blobproto_round_trip_keeps_shape_data_and_diff(arr, with_diff):
    diff = -2 * arr if with_diff else None
    blob = array_to_blobproto(arr, diff)
    assert tuple(blob.shape.dim) == arr.shape
    back = blobproto_to_array(blob)
    assert back.shape == arr.shape and back.dtype == np.float64
    np.testing.assert_array_equal(back, arr)
    if with_diff:
        np.testing.assert_array_equal(blobproto_to_array(blob, return_diff=True), diff)


def test_legacy_4d_shape_folds_values_in_c_order():
    blob = caffe_pb2.BlobProto(num=1, channels=2, height=3, width=4, data=range(24))
    arr = blobproto_to_array(blob)
    assert arr.shape == (1, 2, 3, 4)
    assert arr[0, 1, 2, 3] == 23 and arr[0, 1, 0, 0] == 12 and arr[0, 0, 1, 2] == 6
    # The legacy fields win over shape.dim, as in Caffe's Blob::FromProto.
    blob.shape.dim.extend([24])
    assert blobproto_to_array(blob).shape == (1, 2, 3, 4)


def test_blob_without_shape_is_a_scalar_or_an_error():
    assert blobproto_to_array(caffe_pb2.BlobProto(data=[123.0])) == 123
    assert blobproto_to_array(caffe_pb2.BlobProto(data=[123.0])).shape == ()
    with pytest.raises(ValueError, match="no shape"):
        blobproto_to_array(caffe_pb2.BlobProto(data=np.zeros(100)))
    with pytest.raises(MinicaffeError, match="no shape"):  # both kinds of error, one object
        blobproto_to_array(caffe_pb2.BlobProto(data=np.zeros(100)))


def test_blob_count_mismatches_are_errors():
    blob = caffe_pb2.BlobProto(data=range(5))
    blob.shape.dim.extend([2, 3])
    with pytest.raises(ValueError, match=r"\(2, 3\) needs 6 data values, it holds 5"):
        blobproto_to_array(blob)
    blob = array_to_blobproto(np.ones((2, 2)))  # no diff written
    with pytest.raises(ValueError, match="diff"):
        blobproto_to_array(blob, return_diff=True)
    with pytest.raises(ValueError, match="diff has shape"):
        array_to_blobproto(np.ones((2, 2)), diff=np.ones(4))


def test_double_data_is_read_when_float_data_is_empty():
    blob = caffe_pb2.BlobProto(double_data=[0.1, 0.2], double_diff=[1.0, 2.0])
    blob.shape.dim.extend([2])
    np.testing.assert_array_equal(blobproto_to_array(blob), [0.1, 0.2])  # full double precision
    np.testing.assert_array_equal(blobproto_to_array(blob, return_diff=True), [1.0, 2.0])


def test_blobprotovector_string_round_trip():
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array(7.5), np.ones((1, 2, 1, 2))]
    data = arraylist_to_blobprotovector_str(arrays)
    assert isinstance(data, bytes)
    assert len(caffe_pb2.BlobProtoVector.FromString(data).blobs) == 3
    back = blobprotovector_str_to_arraylist(data)
    assert [a.shape for a in back] == [(2, 3), (), (1, 2, 1, 2)]
    for a, b in zip(arrays, back):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="BlobProtoVector"):
        blobprotovector_str_to_arraylist(b"\xff\xff\xff")


# ---------------------------------------------------------------- Datum

def test_uint8_datum_stores_raw_bytes_and_label_only_when_given():
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    datum = array_to_datum(arr)
    assert (datum.channels, datum.height, datum.width) == (2, 3, 4)
    assert datum.data == bytes(range(24)) and len(datum.float_data) == 0
    assert not datum.HasField("label")
    labelled = array_to_datum(arr, label=0)  # 0 is a label too: it must be written
    assert labelled.HasField("label") and labelled.label == 0
    assert len(labelled.SerializeToString()) > len(datum.SerializeToString())
    back = datum_to_array(datum)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, arr)


@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=3, max_dims=3, max_side=4), elements=finite32))
def test_float_datum_round_trip(arr):
    datum = array_to_datum(arr, label=3)
    assert datum.data == b"" and list(datum.float_data) == arr.ravel().tolist()
    back = datum_to_array(datum)
    assert back.shape == arr.shape and back.dtype == np.float64
    np.testing.assert_array_equal(back, arr)


def test_datum_errors():
    with pytest.raises(ValueError, match="3-D"):
        array_to_datum(np.ones((10, 10)))
    with pytest.raises(ValueError, match="2x2x2.*7 pixel bytes"):
        datum_to_array(caffe_pb2.Datum(channels=2, height=2, width=2, data=bytes(7)))
    with pytest.raises(ValueError, match="3 float_data"):
        datum_to_array(caffe_pb2.Datum(channels=1, height=2, width=2, float_data=[1, 2, 3]))


def test_encoded_datum_is_decoded_to_its_pixels():
    pixels = np.array([[[0, 50], [100, 255]]], dtype=np.uint8)  # one grey channel
    datum = caffe_pb2.Datum(data=encode_image(pixels, "png"), encoded=True, label=1)
    np.testing.assert_array_equal(datum_to_array(datum), pixels)


# ---------------------------------------------------------------- Transformer

def imagenet_style(shape=(1, 3, 2, 2)):
    t = Transformer({"data": shape})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255)
    t.set_mean("data", np.array([10.0, 20.0, 30.0]))
    t.set_input_scale("data", 0.5)
    return t


def test_preprocess_known_pixels():
    # 2 x 2 RGB image; the blob wants BGR, x 255, minus (10, 20, 30), x 0.5.
    image = np.array([[[0.0, 0.2, 0.4], [1.0, 1.0, 1.0]],
                      [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]], dtype=np.float32)
    out = imagenet_style().preprocess("data", image)
    assert out.dtype == np.float32 and out.shape == (3, 2, 2)
    expected = [[[46.0, 122.5], [-5.0, 58.75]],     # B: (255 b - 10) / 2
                [[15.5, 117.5], [-10.0, 53.75]],    # G: (255 g - 20) / 2
                [[-15.0, 112.5], [-15.0, 48.75]]]   # R: (255 r - 30) / 2
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_preprocess_leaves_the_callers_array_alone():
    image = np.full((2, 2, 3), 0.5, dtype=np.float32)
    t = Transformer({"data": (1, 2, 2, 3)})  # no transpose: nothing forces a copy
    t.set_raw_scale("data", 255)
    t.preprocess("data", image)
    assert (image == 0.5).all()


@given(st.data())
def test_deprocess_inverts_preprocess(data):
    channels = data.draw(st.integers(1, 4))
    h, w = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    image = data.draw(hnp.arrays(np.float32, (h, w, channels), elements=st.floats(0, 1, width=32)))
    t = Transformer({"x": (2, channels, h, w)})
    t.set_transpose("x", (2, 0, 1))
    t.set_channel_swap("x", data.draw(st.permutations(range(channels))))
    t.set_raw_scale("x", data.draw(st.sampled_from([1.0, 255.0])))
    if data.draw(st.booleans()):
        t.set_mean("x", data.draw(hnp.arrays(np.float64, (channels,), elements=st.floats(-50, 50))))
    else:
        t.set_mean("x", data.draw(hnp.arrays(np.float64, (channels, h, w), elements=st.floats(-50, 50))))
    t.set_input_scale("x", data.draw(st.sampled_from([0.017, 1.0, 3.0])))
    blob = t.preprocess("x", image)
    assert blob.shape == (channels, h, w)
    np.testing.assert_allclose(t.deprocess("x", blob), image, atol=1e-4)
    np.testing.assert_allclose(t.deprocess("x", blob[None]), image, atol=1e-4)  # a batch of one


def test_preprocess_resizes_to_the_blob_size():
    t = Transformer({"data": (1, 1, 2, 3)})
    t.set_transpose("data", (2, 0, 1))
    out = t.preprocess("data", np.full((5, 7, 1), 0.25))
    assert out.shape == (1, 2, 3) and (out == 0.25).all()


def test_mean_image_of_another_size_is_resized():
    mean = np.stack([np.full((4, 4), 100.0), np.full((4, 4), 50.0)])
    t = Transformer({"data": (1, 2, 2, 2)})
    t.set_mean("data", mean)
    np.testing.assert_array_equal(t.mean["data"], [np.full((2, 2), 100.0), np.full((2, 2), 50.0)])
    t.set_mean("data", mean[:, :2, :2])  # already the right size: kept as given
    assert t.mean["data"].shape == (2, 2, 2)


def test_transformer_settings_are_checked():
    t = Transformer({"data": (1, 3, 4, 4)})
    with pytest.raises(ValueError, match="'label' is not one of the inputs.*'data'"):
        t.set_raw_scale("label", 255)
    with pytest.raises(ValueError, match="set_transpose.*3 axes"):
        t.set_transpose("data", (1, 0))
    with pytest.raises(ValueError, match="set_channel_swap.*3 channel"):
        t.set_channel_swap("data", (1, 0))
    with pytest.raises(ValueError, match="2 per-channel mean value.*3 channel"):
        t.set_mean("data", np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"set_mean\('data'\).*shape \(1, 1, 4, 4\)"):
        t.set_mean("data", np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match=r"mean image of shape \(2, 4, 4\)"):
        t.set_mean("data", np.zeros((2, 4, 4)))


# ---------------------------------------------------------------- load_image

def test_load_image_gives_pixels_over_255(tmp_path):
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]],
                    [[0, 0, 0], [51, 102, 204], [255, 255, 255]]], dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    image = load_image(tmp_path / "rgb.png")
    assert image.dtype == np.float32 and image.shape == (2, 3, 3)
    np.testing.assert_array_equal(image, (rgb / 255.0).astype(np.float32))
    # In grey: BT.709 luma, 0.2125 R + 0.7154 G + 0.0721 B.
    grey = load_image(tmp_path / "rgb.png", color=False)
    assert grey.shape == (2, 3, 1)
    np.testing.assert_allclose(grey[0, :, 0], [0.2125, 0.7154, 0.0721], rtol=1e-6)
    np.testing.assert_allclose(grey[1, 1, 0], 0.2 * 0.2125 + 0.4 * 0.7154 + 0.8 * 0.0721, rtol=1e-6)


def test_load_image_grey_and_alpha(tmp_path):
    grey = np.array([[0, 128], [255, 64]], dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    one = load_image(tmp_path / "grey.png", color=False)
    assert one.shape == (2, 2, 1)
    np.testing.assert_array_equal(one[:, :, 0], (grey / 255.0).astype(np.float32))
    three = load_image(tmp_path / "grey.png")
    assert three.shape == (2, 2, 3) and (three == one).all()
    rgba = np.zeros((1, 2, 4), dtype=np.uint8)
    rgba[..., :3] = [[10, 20, 30], [40, 50, 60]]
    rgba[..., 3] = [0, 255]  # the alpha is dropped, not blended
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(load_image(tmp_path / "rgba.png"),
                                  (rgba[..., :3] / 255.0).astype(np.float32))


def test_load_image_missing_file_names_it(tmp_path):
    with pytest.raises(MinicaffeError, match="nothere.png"):
        load_image(tmp_path / "nothere.png")


# ---------------------------------------------------------------- resize_image

images = hnp.arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)),
                    elements=st.floats(-300, 300, width=32))


@given(images)
def test_resize_to_the_same_size_is_the_identity(im):
    out = resize_image(im, im.shape[:2])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, im)


@given(st.floats(-1000, 1000, width=32), st.integers(1, 4), st.integers(1, 6), st.integers(1, 6),
       st.sampled_from([0, 1]))
def test_constant_image_stays_constant(value, channels, h, w, order):
    out = resize_image(np.full((3, 4, channels), value, dtype=np.float32), (h, w), order)
    assert out.shape == (h, w, channels) and (out == value).all()


@given(images, st.integers(1, 7), st.integers(1, 7))
def test_resized_values_stay_within_the_input_range(im, h, w):
    out = resize_image(im, (h, w))
    assert out.shape == (h, w, im.shape[2])
    assert out.min() >= im.min() and out.max() <= im.max()


def test_bilinear_known_values():
    # Widening [0, 1] to 4 pixels samples x = (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25;
    # outside [0, 1] the edge pixel repeats.
    out = resize_image(np.array([[[0.0], [1.0]]]), (1, 4))
    np.testing.assert_allclose(out[0, :, 0], [0.0, 0.25, 0.75, 1.0])
    # Halving 4 pixels samples x = 0.5 and 2.5: the mean of each pair. Values far outside
    # [0, 1] keep their scale, in every channel.
    ramp = np.stack([np.array([0.0, 100, 200, 300]), -np.array([0.0, 100, 200, 300])], axis=-1)[None]
    np.testing.assert_allclose(resize_image(ramp, (1, 2))[0], [[50, -50], [250, -250]])
    # Nearest neighbour takes the source pixel under each output centre: 1 and 3.
    np.testing.assert_array_equal(resize_image(np.arange(4.0)[None, :, None], (1, 2), 0)[0, :, 0], [1, 3])


def test_resize_errors():
    with pytest.raises(ValueError, match="interp_order 3"):
        resize_image(np.zeros((2, 2, 1)), (3, 3), interp_order=3)
    with pytest.raises(ValueError, match="H x W x K"):
        resize_image(np.zeros((1, 2, 2, 1)), (3, 3))


# ---------------------------------------------------------------- oversample

def test_oversample_known_crops():
    im = np.arange(16.0).reshape(4, 4, 1)
    crops = oversample([im], (2, 2))
    assert crops.shape == (10, 2, 2, 1) and crops.dtype == np.float32
    expected = [[[0, 1], [4, 5]], [[2, 3], [6, 7]], [[8, 9], [12, 13]], [[10, 11], [14, 15]],
                [[5, 6], [9, 10]]]  # corners TL, TR, BL, BR, then the centre
    np.testing.assert_array_equal(crops[:5, :, :, 0], expected)
    np.testing.assert_array_equal(crops[5:, :, :, 0], [[row[::-1] for row in c] for c in expected])


@given(st.data())
def test_oversample_crops_are_slices_and_mirrors(data):
    ch, cw = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    h, w = ch + data.draw(st.integers(0, 3)), cw + data.draw(st.integers(0, 3))
    batch = data.draw(hnp.arrays(np.float32, (data.draw(st.integers(1, 3)), h, w, 2),
                                 elements=st.floats(-5, 5, width=32)))
    crops = oversample(batch, (ch, cw))
    assert crops.shape == (10 * len(batch), ch, cw, 2)
    # pycaffe's centre crop: the image centre minus half the crop, truncated.
    top, left = int(h / 2 - ch / 2), int(w / 2 - cw / 2)
    for n, im in enumerate(batch):
        slices = [im[:ch, :cw], im[:ch, w - cw:], im[h - ch:, :cw], im[h - ch:, w - cw:],
                  im[top:top + ch, left:left + cw]]
        for k, expected in enumerate(slices):
            np.testing.assert_array_equal(crops[10 * n + k], expected)
            np.testing.assert_array_equal(crops[10 * n + 5 + k], expected[:, ::-1])


def test_oversample_errors():
    with pytest.raises(ValueError, match="do not fit"):
        oversample([np.zeros((3, 3, 1))], (4, 2))
    with pytest.raises(ValueError, match="one shape"):
        oversample([np.zeros((3, 3, 1)), np.zeros((4, 3, 1))], (2, 2))
