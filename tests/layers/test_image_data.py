"""ImageData on real MNIST digits written as PNG files: contents, order, resize, errors."""
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minicaffe import common
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.io.idx import read_images, read_labels
from minicaffe.io.image import read_image, resize_bilinear
from minicaffe.layer import create_layer
from minicaffe.proto import caffe_pb2
from tests.strategies import layer_param

REPO = Path(__file__).resolve().parents[2]
MNIST = next((d for d in (REPO / "data" / "mnist", REPO.parent / "shared" / "data" / "mnist")
              if (d / "t10k-images-idx3-ubyte.gz").is_file()), REPO / "data" / "mnist")
N = 30
SCALE = np.float32(0.00390625)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The first 30 official test digits as PNG files under a folder, and a list file."""
    root = tmp_path_factory.mktemp("digits")
    images = read_images(MNIST / "t10k-images-idx3-ubyte.gz")[:N]
    labels = read_labels(MNIST / "t10k-labels-idx1-ubyte.gz")[:N]
    (root / "img").mkdir()
    lines = []
    for i, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(root / "img" / f"digit {i:03d}.png")  # a space in the name
        lines.append(f"img/digit {i:03d}.png {label}")
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return root, images, labels


def image_layer(source, batch_size=8, phase=caffe_pb2.TRAIN, transform=None, **params):
    param = layer_param("ImageData", name="images",
                        image_data_param={"source": str(source), "batch_size": batch_size, **params},
                        transform_param=transform if transform is not None else {"scale": 0.00390625})
    param.phase = phase
    layer = create_layer(param)
    top = [Blob(), Blob()]
    layer.setup([], top)
    return layer, top


def forward(layer, top):
    layer.forward([], top)
    return [blob.cpu_data().copy() for blob in top]


def grey(digits, **params):
    root = digits[0]
    return image_layer(root / "list.txt", root_folder=f"{root}/", is_color=False, **params)


def test_batches_are_the_idx_digits_in_list_order(mode, digits):
    _, images, labels = digits
    layer, top = grey(digits)
    assert top[0].shape == (8, 1, 28, 28) and top[1].shape == (8,)
    for k in range(5):  # 40 images of a 30-line list: the fourth batch wraps around
        data, got_labels = forward(layer, top)
        lines = (k * 8 + np.arange(8)) % N
        np.testing.assert_array_equal(data, images[lines][:, None].astype(np.float32) * SCALE)
        np.testing.assert_array_equal(got_labels, labels[lines])
    assert labels[0] == 7
    layer.stop_prefetch()


def test_colour_decoding_gives_bgr_and_grey_gives_three_equal_channels(mode, digits, tmp_path):
    root, images, _ = digits
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30  # R, G, B
    Image.fromarray(rgb).save(tmp_path / "c.png")
    (tmp_path / "l.txt").write_text(f"{tmp_path}/c.png 4\n{root}/img/digit 000.png 7\n")
    layer, top = image_layer(tmp_path / "l.txt", batch_size=1, transform={})
    data, label = forward(layer, top)
    assert data.shape == (1, 3, 2, 3) and label[0] == 4
    assert [data[0, c, 0, 0] for c in range(3)] == [30, 20, 10]  # B, G, R
    data, label = forward(layer, top)  # batch_size 1: a 28 x 28 image after a 2 x 3 one
    assert data.shape == (1, 3, 28, 28) and label[0] == 7
    for c in range(3):
        np.testing.assert_array_equal(data[0, c], images[0])
    layer.stop_prefetch()


def test_bilinear_resize_matches_hand_computed_values():
    # OpenCV INTER_LINEAR, 2 -> 4: output centres at source x = -0.25, 0.25, 0.75, 1.25,
    # clamped at the borders: weights (1, 0), (.75, .25), (.25, .75), (0, 1).
    row = np.array([[[0, 100]]], np.uint8)
    np.testing.assert_array_equal(resize_bilinear(row, 1, 4)[0, 0], [0, 25, 75, 100])
    # 4 -> 2 averages pairs (centres at 0.5 and 2.5); 2x2 -> 1x1 is the mean of four.
    np.testing.assert_array_equal(resize_bilinear(np.array([[[0, 10, 20, 30]]], np.uint8), 1, 2)[0, 0],
                                  [5, 25])
    assert resize_bilinear(np.array([[[0, 40], [80, 120]]], np.uint8), 1, 1)[0, 0, 0] == 60


def test_new_height_and_width_resize_every_image(mode, digits):
    root, images, _ = digits
    layer, top = grey(digits, new_height=14, new_width=14, transform={})
    data, _ = forward(layer, top)
    assert data.shape == (8, 1, 14, 14)
    # 28 -> 14 is an exact halving: each output pixel is a 2 x 2 mean, rounded half up.
    want = images[:8].reshape(8, 14, 2, 14, 2).astype(np.float64).mean(axis=(2, 4))
    np.testing.assert_array_equal(data[:, 0], np.floor(want + 0.5))
    layer.stop_prefetch()


def test_shuffle_visits_every_line_once_per_pass_in_a_new_order(mode, digits):
    _, images, labels = digits
    common.set_random_seed(3)
    layer, top = grey(digits, batch_size=10, shuffle=True)
    passes = [np.concatenate([forward(layer, top)[0] for _ in range(3)]) for _ in range(2)]
    flat = images.reshape(N, -1).astype(np.float32) * SCALE
    orders = [[int(np.flatnonzero((flat == img.ravel()).all(axis=1))[0]) for img in p] for p in passes]
    assert sorted(orders[0]) == sorted(orders[1]) == list(range(N))
    assert orders[0] != orders[1] and orders[0] != list(range(N))
    common.set_random_seed(3)  # the same seed, the same order
    again, again_top = grey(digits, batch_size=10, shuffle=True)
    np.testing.assert_array_equal(forward(again, again_top)[0], passes[0][:10])
    layer.stop_prefetch()
    again.stop_prefetch()


def test_rand_skip_starts_the_first_pass_later(mode, digits):
    _, _, labels = digits
    common.set_random_seed(5)
    layer, top = grey(digits, batch_size=4, rand_skip=20)
    assert 0 <= layer.skip < 20
    _, got = forward(layer, top)
    np.testing.assert_array_equal(got, labels[(layer.skip + np.arange(4)) % N])
    layer.stop_prefetch()


def test_set_batch_index_seeks(mode, digits):
    _, _, labels = digits
    layer, top = grey(digits, shuffle=True)
    seen = [forward(layer, top)[1] for _ in range(6)]
    for k in (4, 1, 5):
        layer.set_batch_index(k)
        np.testing.assert_array_equal(forward(layer, top)[1], seen[k])
    layer.stop_prefetch()


def test_transform_crop_mirror_mean(mode, digits):
    _, images, _ = digits
    layer, top = grey(digits, phase=caffe_pb2.TEST, transform={"crop_size": 20, "mean_value": [100]})
    data, _ = forward(layer, top)
    np.testing.assert_array_equal(data[:, 0], images[:8, 4:24, 4:24].astype(np.float32) - 100)
    layer.stop_prefetch()


@pytest.mark.parametrize("params, message", [
    ({"new_height": 10}, "new_height (10) and new_width (0) must be set together"),
    ({"batch_size": 0}, "image_data_param.batch_size must be positive, got 0"),
])
def test_bad_parameters(digits, params, message):
    with pytest.raises(MinicaffeError, match=r"ImageData layer 'images': " + re.escape(message)):
        grey(digits, **params)


def test_missing_and_empty_list_files(tmp_path):
    with pytest.raises(MinicaffeError, match="ImageData layer 'images': cannot open the list file .*nope.txt"):
        image_layer(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(MinicaffeError, match="list file .*empty.txt' is empty"):
        image_layer(tmp_path / "empty.txt")
    (tmp_path / "bad.txt").write_text("a.png seven\n")
    with pytest.raises(MinicaffeError, match=r"bad.txt:1: expected 'path label' with an integer label"):
        image_layer(tmp_path / "bad.txt")


def test_missing_and_unreadable_images(digits, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    (tmp_path / "l.txt").write_text("missing.png 1\n")
    with pytest.raises(MinicaffeError, match=r"could not load '.*missing.png'"):
        image_layer(tmp_path / "l.txt", root_folder=f"{tmp_path}/")
    # The first image loads at setup; the broken one is in the second batch: forward fails.
    root = digits[0]
    (tmp_path / "l2.txt").write_text(f"{root}/img/digit 000.png 7\n{tmp_path}/broken.png 2\n")
    layer, top = image_layer(tmp_path / "l2.txt", batch_size=1)
    forward(layer, top)
    with pytest.raises(MinicaffeError, match=r"ImageData layer 'images': reading batch 1 .* "
                                             r"could not load '.*broken.png': cannot be decoded"):
        forward(layer, top)
    layer.stop_prefetch()


def test_mixed_sizes_in_one_batch_are_an_error(digits, tmp_path):
    root = digits[0]
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "small.png")
    (tmp_path / "l.txt").write_text(f"{root}/img/digit 000.png 7\n{tmp_path}/small.png 1\n")
    layer, top = image_layer(tmp_path / "l.txt", batch_size=2, is_color=False)
    with pytest.raises(MinicaffeError, match=r"small.png' is 1x5x5 .* but the batch's first image is 1x28x28"):
        forward(layer, top)
    layer.stop_prefetch()


def test_read_image_grey_and_colour(digits):
    root, images, _ = digits
    path = root / "img" / "digit 001.png"
    np.testing.assert_array_equal(read_image(path, is_color=False)[0], images[1])
    assert read_image(path).shape == (3, 28, 28)
    assert read_image(path, 7, 9, is_color=False).shape == (1, 7, 9)
