"""WindowData: R-CNN windows cut from PNG files: geometry, sampling, mean, errors."""
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minicaffe import common, protoio
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.io.idx import read_images
from minicaffe.layer import create_layer
from minicaffe.proto import caffe_pb2
from tests.strategies import layer_param

REPO = Path(__file__).resolve().parents[2]
MNIST = next((d for d in (REPO / "data" / "mnist", REPO.parent / "shared" / "data" / "mnist")
              if (d / "t10k-images-idx3-ubyte.gz").is_file()), REPO / "data" / "mnist")
BGR = (10, 20, 30)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """digit.png: the first official test digit, in colour; flat.png: 20 x 20 of one BGR colour."""
    root = tmp_path_factory.mktemp("windows")
    digit = read_images(MNIST / "t10k-images-idx3-ubyte.gz")[0]
    Image.fromarray(np.repeat(digit[:, :, None], 3, axis=2)).save(root / "digit.png")
    flat = np.empty((20, 20, 3), np.uint8)
    flat[...] = BGR[::-1]  # stored RGB
    Image.fromarray(flat).save(root / "flat.png")
    return root, digit


def window_file(path, entries):
    """entries: [(image path, C, H, W, [(label, overlap, x1, y1, x2, y2), ...]), ...]"""
    lines = []
    for i, (image, c, h, w, windows) in enumerate(entries):
        lines += [f"# {i}", image, str(c), str(h), str(w), str(len(windows))]
        lines += [" ".join(map(str, win)) for win in windows]
    path.write_text("\n".join(lines) + "\n")
    return path


def window_layer(source, batch_size=2, crop_size=8, transform=None, root="", **params):
    param = layer_param("WindowData", name="windows",
                        window_data_param={"source": str(source), "batch_size": batch_size,
                                           "root_folder": root, **params},
                        transform_param={"crop_size": crop_size, **(transform or {})})
    layer = create_layer(param)
    top = [Blob(), Blob()]
    layer.setup([], top)
    return layer, top


def forward(layer, top):
    layer.forward([], top)
    return [blob.cpu_data().copy() for blob in top]


def test_a_window_of_crop_size_is_cut_out_unchanged_and_scaled(mode, images, tmp_path):
    root, digit = images
    src = window_file(tmp_path / "w.txt", [("digit.png", 3, 28, 28, [(7, 0.9, 6, 4, 21, 19)])])
    layer, top = window_layer(src, batch_size=3, crop_size=16, root=f"{root}/", fg_fraction=1.0,
                              scale=0.5, transform={"scale": 100.0})  # transform's scale is unused
    data, labels = forward(layer, top)
    assert data.shape == (3, 3, 16, 16) and labels.tolist() == [7, 7, 7]
    for c in range(3):
        np.testing.assert_array_equal(data[:, c], np.broadcast_to(digit[4:20, 6:22] * np.float32(0.5),
                                                                  (3, 16, 16)))
    layer.stop_prefetch()


def test_batches_hold_background_then_foreground(mode, images, tmp_path):
    root, _ = images
    windows = [(3, 0.8, 0, 0, 7, 7), (5, 0.6, 2, 2, 9, 9),   # foreground
               (4, 0.2, 0, 0, 7, 7),                          # background: label becomes 0
               (6, 0.5, 0, 0, 7, 7)]                          # 0.5 with thresholds .6/.4: unused
    src = window_file(tmp_path / "w.txt", [("flat.png", 3, 20, 20, windows)])
    layer, top = window_layer(src, batch_size=8, root=f"{root}/", fg_fraction=0.3,
                              fg_threshold=0.6, bg_threshold=0.4)
    assert (len(layer.fg), len(layer.bg)) == (2, 1)
    seen = set()
    for _ in range(5):
        data, labels = forward(layer, top)
        # floor(8 * 0.3) = 2 foreground windows, after 6 background ones.
        assert labels[:6].tolist() == [0] * 6 and set(labels[6:]) <= {3, 5}
        seen |= set(labels[6:].tolist())
        assert [data[:, c].min() for c in range(3)] == list(BGR)  # whole 8 x 8 windows of one colour
    assert seen == {3, 5}
    layer.stop_prefetch()


def test_context_pad_leaves_zeros_where_the_grown_box_leaves_the_image(mode, images, tmp_path):
    # Box (0, 0)-(5, 5), crop 10, pad 2: grown by 10/6 about centre 3 to (-2..8): 11 pixels
    # of which 2 outside; scaled by 10/11, the outside becomes round(1.82) = 2 output
    # pixels and the inside round(8.18) = 8.
    root, _ = images
    src = window_file(tmp_path / "w.txt", [("flat.png", 3, 20, 20, [(1, 1.0, 0, 0, 5, 5)])])
    layer, top = window_layer(src, batch_size=1, crop_size=10, root=f"{root}/", fg_fraction=1.0,
                              context_pad=2)
    data, _ = forward(layer, top)
    for c, value in enumerate(BGR):
        want = np.zeros((10, 10), np.float32)
        want[2:, 2:] = value
        np.testing.assert_array_equal(data[0, c], want)
    layer.stop_prefetch()
    # Mirrored, the padding moves to the other side (the right edge has none).
    common.set_random_seed(0)
    layer, top = window_layer(src, batch_size=16, crop_size=10, root=f"{root}/", fg_fraction=1.0,
                              context_pad=2, transform={"mirror": True})
    data, _ = forward(layer, top)
    flipped = [d for d in data if d[0, 5, 0] != 0]
    assert 0 < len(flipped) < 16
    for d in flipped:
        np.testing.assert_array_equal(d[0, 2:, :8], np.full((8, 8), BGR[0], np.float32))
        assert not d[0, :, 8:].any() and not d[0, :2].any()
    layer.stop_prefetch()


def test_square_mode_grows_the_short_side(images, tmp_path):
    # A 4 x 8 box (x 12..15, y 10..17): square mode makes it 8 x 8 about its centre
    # (14, 14), i.e. x 10..18, y 10..18 (9 pixels: C's rounding of 14 +- 4), warped to 8.
    root, digit = images
    src = window_file(tmp_path / "w.txt", [("digit.png", 3, 28, 28, [(2, 1.0, 12, 10, 15, 17)])])
    layer, top = window_layer(src, batch_size=1, crop_size=8, root=f"{root}/", fg_fraction=1.0,
                              crop_mode="square")
    from minicaffe.io.image import resize_bilinear
    data, _ = forward(layer, top)
    np.testing.assert_array_equal(data[0, 0], resize_bilinear(digit[None, 10:19, 10:19], 8, 8)[0])
    layer.stop_prefetch()


def test_mean_file_centre_and_mean_value(mode, images, tmp_path):
    root, digit = images
    mean = np.zeros((1, 3, 20, 20), np.float32)
    mean[0, :, 2:18, 2:18] = 1.0  # the centre crop_size 16 square: offset (20 - 16) / 2 = 2
    blob = Blob(*mean.shape)
    blob.mutable_cpu_data()[...] = mean
    protoio.write_binary(tmp_path / "mean.binaryproto", blob.to_proto())
    src = window_file(tmp_path / "w.txt", [("digit.png", 3, 28, 28, [(7, 0.9, 6, 4, 21, 19)])])
    layer, top = window_layer(src, batch_size=1, crop_size=16, root=f"{root}/", fg_fraction=1.0,
                              transform={"mean_file": str(tmp_path / "mean.binaryproto")})
    np.testing.assert_array_equal(forward(layer, top)[0][0, 1], digit[4:20, 6:22] - np.float32(1))
    layer.stop_prefetch()
    layer, top = window_layer(src, batch_size=1, crop_size=16, root=f"{root}/", fg_fraction=1.0,
                              transform={"mean_value": [1, 2, 3]})
    np.testing.assert_array_equal(forward(layer, top)[0][0, 2], digit[4:20, 6:22] - np.float32(3))
    layer.stop_prefetch()


def test_set_batch_index_repeats_batches(images, tmp_path):
    root, _ = images
    windows = [(k, 0.9, k, k, k + 7, k + 7) for k in range(1, 10)] + [(0, 0.1, 0, 0, 9, 9)]
    src = window_file(tmp_path / "w.txt", [("digit.png", 3, 28, 28, windows)])
    layer, top = window_layer(src, batch_size=6, root=f"{root}/", fg_fraction=0.5,
                              transform={"mirror": True})
    seen = [forward(layer, top) for _ in range(4)]
    for k in (2, 0, 3):
        layer.set_batch_index(k)
        data, labels = forward(layer, top)
        np.testing.assert_array_equal(data, seen[k][0])
        np.testing.assert_array_equal(labels, seen[k][1])
    layer.stop_prefetch()


def test_cache_images_reads_files_at_setup(images, tmp_path):
    root, digit = images
    (tmp_path / "copy.png").write_bytes((root / "digit.png").read_bytes())
    src = window_file(tmp_path / "w.txt", [("copy.png", 3, 28, 28, [(7, 0.9, 6, 4, 21, 19)])])
    layer, top = window_layer(src, batch_size=1, crop_size=16, root=f"{tmp_path}/", fg_fraction=1.0,
                              cache_images=True)
    layer.stop_prefetch()  # no batch read ahead from the file: the next ones come from the cache
    (tmp_path / "copy.png").unlink()
    layer.set_batch_index(0)
    np.testing.assert_array_equal(forward(layer, top)[0][0, 0], digit[4:20, 6:22])
    layer.stop_prefetch()


@pytest.mark.parametrize("text, message", [
    ("", "window file '.*' is empty"),
    ("# 0 a.png 3 10 10 1\n0 0.9 0 0 5 5\n", "a foreground window of image 0 has label 0"),
    ("# 1 a.png 3 10 10 0\n", "image 0 is numbered 1"),
    ("% 0 a.png 3 10 10 0\n", "expected '#' to start image 0, got '%'"),
    ("# 0 a.png 3 10 10 2\n1 0.9 0 0 5 5\n", "ends inside image 1's entry|ends inside image 0's entry"),
    ("# 0 a.png 3 10 ten 0\n", "expected width, got 'ten'"),
    ("# 0 a.png 3 10 10 1\n1 0.9 0 0 5 5\n", "each batch needs 2 background window"),
    ("# 0 a.png 1 10 10 2\n1 0.9 0 0 5 5\n1 0.1 0 0 5 5\n",
     "1 channel\\(s\\); WindowData reads every image in colour"),
])
def test_bad_window_files(tmp_path, text, message):
    (tmp_path / "w.txt").write_text(text)
    with pytest.raises(MinicaffeError, match=r"WindowData layer 'windows': .*(" + message + ")"):
        window_layer(tmp_path / "w.txt", batch_size=4, fg_fraction=0.5)


def test_bad_parameters_and_missing_files(images, tmp_path):
    root, _ = images
    with pytest.raises(MinicaffeError, match="failed to open window file .*nope.txt"):
        window_layer(tmp_path / "nope.txt")
    src = window_file(tmp_path / "w.txt", [("gone.png", 3, 28, 28, [(7, 0.9, 6, 4, 21, 19)])])
    with pytest.raises(MinicaffeError, match="crop_size must be positive"):
        window_layer(src, crop_size=0, fg_fraction=1.0)
    with pytest.raises(MinicaffeError, match="crop_mode is 'warp' or 'square', got 'fit'"):
        window_layer(src, fg_fraction=1.0, crop_mode="fit")
    layer, top = window_layer(src, batch_size=1, fg_fraction=1.0, root=f"{tmp_path}/")
    with pytest.raises(MinicaffeError, match=re.escape("WindowData layer 'windows': reading batch 0") +
                       r".*image 0 .*could not open or find file '.*gone.png'"):
        forward(layer, top)
    layer.stop_prefetch()
    src = window_file(tmp_path / "w2.txt", [("digit.png", 3, 28, 28, [(7, 0.9, 20, 20, 40, 40)])])
    layer, top = window_layer(src, batch_size=1, fg_fraction=1.0, root=f"{root}/")
    with pytest.raises(MinicaffeError, match=r"window \(20, 20, 40, 40\) does not fit its 28x28 image"):
        forward(layer, top)
    layer.stop_prefetch()
