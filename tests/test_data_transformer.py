"""DataTransformer: Caffe's crop/mirror/mean/scale, known answers and properties.

Synthetic Datums as in Caffe's test_data_transformer.cpp: 2 x 10 x 10 images whose pixels
are all `label`, or "unique" pixels 0, 1, 2, ... in C-order.
"""
import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from minicaffe import common, protoio
from minicaffe.common import MinicaffeError
from minicaffe.data_transformer import DataTransformer, datum_to_array
from minicaffe.proto import caffe_pb2

TRAIN, TEST = caffe_pb2.TRAIN, caffe_pb2.TEST


def fill_datum(label, unique, c=2, h=10, w=10):
    size = c * h * w
    pixels = np.arange(size) if unique else np.full(size, label)
    return caffe_pb2.Datum(channels=c, height=h, width=w, label=label,
                           data=pixels.astype(np.uint8).tobytes())


def transformer(phase=TEST, **fields):
    return DataTransformer(caffe_pb2.TransformationParameter(**fields), phase)


def test_empty_transform(mode):
    out = transformer().transform_datum(fill_datum(3, unique=False))
    assert out.shape == (2, 10, 10) and out.dtype == np.float32
    assert np.all(out == 3)
    unique = transformer().transform_datum(fill_datum(0, unique=True))
    np.testing.assert_array_equal(unique.ravel(), np.arange(200))


def test_center_crop_in_test(mode):
    t = transformer(TEST, crop_size=2)
    for _ in range(3):  # TEST crops never move
        out = t.transform_datum(fill_datum(0, unique=True))
        # offset (10 - 2) // 2 = 4 in both directions: pixels c*100 + row*10 + col.
        np.testing.assert_array_equal(out, [[[44, 45], [54, 55]], [[144, 145], [154, 155]]])
    odd = transformer(TEST, crop_size=2).transform_datum(fill_datum(0, True, c=1, h=5, w=4))
    np.testing.assert_array_equal(odd, [[[5, 6], [9, 10]]])  # offsets (1, 1)


def test_scale_after_mean(mode):
    # (x - mean) * scale = (200 - 100) * 0.5 = 50, not x * scale - mean = 0.
    datum = caffe_pb2.Datum(channels=1, height=1, width=1, data=bytes([200]))
    assert transformer(scale=0.5, mean_value=[100]).transform_datum(datum).item() == 50
    mnist = transformer(scale=0.00390625).transform_datum(datum)
    assert mnist.item() == np.float32(200 / 256)


def test_mean_value_one_and_per_channel(mode):
    out = transformer(mean_value=[2]).transform_datum(fill_datum(0, unique=False))
    assert np.all(out == -2)  # Caffe's TestMeanValue
    out = transformer(mean_value=[0, 1]).transform_datum(fill_datum(0, unique=False))
    assert np.all(out[0] == 0) and np.all(out[1] == -1)  # TestMeanValues: label - c
    out = transformer(mean_value=[10, 20, 30]).transform_datum(fill_datum(40, False, c=3, h=2, w=2))
    np.testing.assert_array_equal(out[:, 0, 0], [30, 20, 10])


def write_mean(path, values, legacy=True):
    proto = caffe_pb2.BlobProto()
    if legacy:
        proto.num, proto.channels, proto.height, proto.width = (1, *values.shape)
    else:
        proto.shape.dim.extend((1, *values.shape))
    proto.data.extend(values.ravel().tolist())
    protoio.write_binary(path, proto)
    return str(path)


@pytest.mark.parametrize("legacy", [True, False])
def test_mean_file(mode, tmp_path, legacy):
    mean_file = write_mean(tmp_path / "mean.binaryproto", np.arange(200.0).reshape(2, 10, 10), legacy)
    out = transformer(mean_file=mean_file).transform_datum(fill_datum(0, unique=True))
    assert np.all(out == 0)  # Caffe's TestMeanFile
    # The mean is cropped with the pixels (it has the uncropped size), so still zero.
    cropped = transformer(TEST, mean_file=mean_file, crop_size=3, mirror=True)
    assert np.all(cropped.transform(np.stack([datum_to_array(fill_datum(0, True))] * 8)) == 0)


def test_mirror_flips_left_right_in_both_phases(mode):
    # Caffe draws the flip in TRAIN and TEST alike (its TestMirrorTest expects flips).
    image = datum_to_array(fill_datum(0, unique=True)).astype(np.float32)
    for phase in (TRAIN, TEST):
        common.set_random_seed(1701)
        out = transformer(phase, mirror=True).transform(np.stack([image] * 32))
        flipped = [bool(np.array_equal(o, image[:, :, ::-1])) for o in out]
        same = [bool(np.array_equal(o, image)) for o in out]
        assert all(f != s for f, s in zip(flipped, same))
        assert 0 < sum(flipped) < 32


def test_crop_and_mirror_index_mapping(mode):
    # One item, hand-placed: TEST crop 2 of a 1 x 4 x 5 image, offsets (1, 1), mirrored.
    image = np.arange(20, dtype=np.uint8).reshape(1, 1, 4, 5)
    t = transformer(TEST, crop_size=2, mirror=True)
    outs = {t.transform(image, np.random.default_rng(s)).tobytes() for s in range(20)}
    plain = np.array([[[[6, 7], [11, 12]]]], np.float32)
    assert outs == {plain.tobytes(), plain[..., ::-1].copy().tobytes()}


def reference(image, mean, scale, h0, w0, height, width, mirror):
    """Caffe's loop, literally: top[(c*h + i)*w + j'] = (data[idx] - mean[idx]) * scale."""
    channels = image.shape[0]
    out = np.empty((channels, height, width), np.float32)
    for c in range(channels):
        for i in range(height):
            for j in range(width):
                value = np.float32(image[c, h0 + i, w0 + j]) - np.float32(mean[c, h0 + i, w0 + j])
                out[c, i, width - 1 - j if mirror else j] = value * np.float32(scale)
    return out


@given(c=st.integers(1, 3), h=st.integers(1, 6), w=st.integers(1, 6), n=st.integers(1, 4),
       crop=st.integers(0, 6), mirror=st.booleans(), phase=st.sampled_from([TRAIN, TEST]),
       scale=st.sampled_from([1.0, 0.5, 0.00390625, 3.0]), use_mean=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_batch_matches_caffe_loop(mode, c, h, w, n, crop, mirror, phase, scale, use_mean, seed):
    """Each output item is Caffe's loop for one allowed (h_off, w_off, mirror)."""
    crop = min(crop, h, w)
    gen = np.random.default_rng(seed)
    images = gen.integers(0, 256, (n, c, h, w), dtype=np.uint8)
    mean_values = gen.uniform(0, 255, c).astype(np.float32).tolist() if use_mean else []
    t = transformer(phase, crop_size=crop, mirror=mirror, scale=scale, mean_value=mean_values)
    out = t.transform(images, np.random.default_rng(seed))
    out_h, out_w = (crop, crop) if crop else (h, w)
    assert out.shape == (n, c, out_h, out_w) and out.dtype == np.float32
    mean = np.broadcast_to(np.asarray(mean_values or [0.0], np.float32).reshape(-1, 1, 1), (c, h, w))
    for item, image in zip(out, images):
        matches = [(h0, w0, m) for h0 in range(h - out_h + 1) for w0 in range(w - out_w + 1)
                   for m in (False, True)
                   if np.array_equal(item, reference(image, mean, scale, h0, w0, out_h, out_w, m))]
        assert matches, "output is not a Caffe crop/flip of its input"
        if not mirror:
            assert any(not m for _, _, m in matches)
        if crop and phase == TEST:
            assert any((h0, w0) == ((h - crop) // 2, (w - crop) // 2) for h0, w0, _ in matches)


def test_random_crop_in_train_is_repeatable_per_seed(mode):
    image = datum_to_array(fill_datum(0, unique=True))
    batch = np.stack([image] * 16)

    def run(seed):
        common.set_random_seed(seed)
        t = transformer(TRAIN, crop_size=4, mirror=True)
        return t.transform(batch), t.transform(batch, t.rng_for(3)), t.transform(batch, t.rng_for(3))

    a, b = run(1701), run(1701)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a[1], a[2])  # batch 3's draws depend only on (seed, 3)
    corners = {(int(o[0, 0, 0]), int(o[0, 0, -1])) for o in a[0]}
    assert len(corners) > 1  # TRAIN crops move (Caffe's TestCropTrain)


def test_float_data_datum(mode):
    datum = caffe_pb2.Datum(channels=1, height=2, width=2, float_data=[0.5, -1.0, 2.0, 4.0])
    out = transformer(scale=2.0, mean_value=[1.0]).transform_datum(datum)
    np.testing.assert_array_equal(out, [[[-1.0, -4.0], [2.0, 6.0]]])


def encode(array, fmt="PNG"):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def test_encoded_datums_decode_like_opencv(mode):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    datum = caffe_pb2.Datum(data=encode(gray), encoded=True, label=1)
    np.testing.assert_array_equal(datum_to_array(datum), gray[None])
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    color = caffe_pb2.Datum(data=encode(rgb), encoded=True)
    bgr = datum_to_array(color)
    assert bgr.shape == (3, 2, 3) and bgr[:, 0, 0].tolist() == [30, 20, 10]  # OpenCV's BGR
    assert datum_to_array(color, force_gray=True).shape == (1, 2, 3)
    assert datum_to_array(datum, force_color=True).shape == (3, 3, 4)
    t = transformer(force_gray=True, scale=0.5)
    assert t.transform_datum(color).shape == (1, 2, 3)


def test_bad_datums(mode):
    short = caffe_pb2.Datum(channels=1, height=3, width=3, data=b"\x00" * 8)
    with pytest.raises(MinicaffeError, match="key7: Datum says 1x3x3 = 9 pixels but holds 8 bytes"):
        datum_to_array(short, name="key7")
    with pytest.raises(MinicaffeError, match="holds 1 float_data values"):
        datum_to_array(caffe_pb2.Datum(channels=1, height=1, width=2, float_data=[1.0]))
    with pytest.raises(MinicaffeError, match="cannot be decoded as an image"):
        datum_to_array(caffe_pb2.Datum(data=b"not a png", encoded=True))


def test_parameter_errors(mode, tmp_path):
    mean_file = write_mean(tmp_path / "mean.binaryproto", np.zeros((1, 10, 10)))
    with pytest.raises(MinicaffeError, match="cannot specify mean_file and mean_value"):
        transformer(mean_file=mean_file, mean_value=[1])
    with pytest.raises(MinicaffeError, match="both force_color and force_gray"):
        transformer(force_color=True, force_gray=True)
    with pytest.raises(MinicaffeError, match="nope.binaryproto: no such file"):
        transformer(mean_file=str(tmp_path / "nope.binaryproto"))
    datum = fill_datum(0, unique=False)  # 2 x 10 x 10
    with pytest.raises(MinicaffeError, match=r"mean_file .* has shape \(1, 10, 10\).*images are "
                                             r"\(2, 10, 10\)"):
        transformer(mean_file=mean_file).transform_datum(datum)
    with pytest.raises(MinicaffeError, match="3 mean_value.* for 2 channel"):
        transformer(mean_value=[1, 2, 3]).transform_datum(datum)
    with pytest.raises(MinicaffeError, match="crop_size 11 is larger than the 10x10 image"):
        transformer(crop_size=11).transform_datum(datum)
    two_d = write_mean(tmp_path / "flat.binaryproto", np.zeros((2, 2)), legacy=False)
    proto = caffe_pb2.BlobProto()
    proto.shape.dim.extend([2, 1, 2, 2])
    proto.data.extend([0.0] * 8)
    protoio.write_binary(tmp_path / "two.binaryproto", proto)
    for path in (str(tmp_path / "two.binaryproto"), two_d):
        with pytest.raises(MinicaffeError, match="holds a blob of shape .*1 x C x H x W"):
            transformer(mean_file=path)
