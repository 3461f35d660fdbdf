"""Classifier and Detector (pycaffe's caffe.Classifier / caffe.Detector) against the same
steps done by hand: slicing, preprocessing arithmetic and a plain Net.forward.

The net is Caffe's own LeNet deploy definition (examples/mnist/lenet.prototxt) with a
batch of 4, so that a few images already need several batches, the last one padded;
its weights come from a seeded initialisation.
"""
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minicaffe import common, protoio
from minicaffe.classifier import Classifier
from minicaffe.common import MinicaffeError
from minicaffe.detector import Detector
from minicaffe.io import resize_image
from minicaffe.io.idx import read_images
from minicaffe.net import TEST, Net
from tests.zoo import CAFFE_MODELS, require_caffe_models

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"
BATCH = 4


def lenet(tmp_path, channels: int):
    """LeNet's deploy prototxt with a batch of BATCH and `channels` input channels, plus
    seeded weights for it; returns the two paths."""
    require_caffe_models()
    param = protoio.read_net_param(CAFFE_MODELS / "examples" / "mnist" / "lenet.prototxt")
    shape = param.layer[0].input_param.shape[0]
    shape.dim[0], shape.dim[1] = BATCH, channels
    model, weights = tmp_path / f"lenet{channels}.prototxt", tmp_path / f"lenet{channels}.caffemodel"
    protoio.write_text(model, param)
    common.set_random_seed(1701)
    Net(model, TEST).save(weights)
    return model, weights


@pytest.fixture(scope="module")
def grey_lenet(tmp_path_factory):
    return lenet(tmp_path_factory.mktemp("grey_lenet"), channels=1)


@pytest.fixture(scope="module")
def colour_lenet(tmp_path_factory):
    return lenet(tmp_path_factory.mktemp("colour_lenet"), channels=3)


@pytest.fixture(scope="module")
def digits():
    """Five MNIST test digits as load_image would give them: 28 x 28 x 1 floats in [0, 1]."""
    return [(d / 255.0).astype(np.float32)[:, :, None] for d in read_images(MNIST)[:5]]


def forward_one_by_one(net, blobs):
    return np.stack([net.forward(data=blob[None])["prob"][0].copy() for blob in blobs])


def test_centre_crop_prediction_equals_manual_forward(grey_lenet, digits):
    model, weights = grey_lenet
    classifier = Classifier(model, weights, mean=np.array([0.13]), input_scale=1.5)
    probs = classifier.predict(digits, oversample=False)
    assert probs.shape == (5, 10)  # 5 images: a full batch of 4, then 1 padded with zeros
    # By hand: the digits are already 28 x 28; (x - 0.13) * 1.5, as 1 x 28 x 28.
    manual = [((d - 0.13) * 1.5).transpose(2, 0, 1) for d in digits]
    expected = forward_one_by_one(Net(model, weights, TEST), manual)
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)  # rows of a softmax


def test_oversampled_prediction_is_the_mean_over_ten_crops(grey_lenet, digits):
    model, weights = grey_lenet
    classifier = Classifier(model, weights, image_dims=(32, 32))
    images = digits[:2]
    probs = classifier.predict(images, oversample=True)
    assert probs.shape == (2, 10)

    net = Net(model, weights, TEST)
    for image, row in zip(images, probs):
        big = resize_image(image, (32, 32))
        # 32 - 28 = 4: corners at offsets 0 and 4, the centre at 2.
        crops = [big[t:t + 28, l:l + 28] for t, l in [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]]
        crops += [c[:, ::-1] for c in crops]
        expected = forward_one_by_one(net, [c.transpose(2, 0, 1) for c in crops]).mean(axis=0)
        np.testing.assert_allclose(row, expected, rtol=1e-5, atol=1e-7)

    # Without oversampling, the single crop is the centre one, at offset 2.
    centre = classifier.predict(images, oversample=False)
    manual = [resize_image(im, (32, 32))[2:30, 2:30].transpose(2, 0, 1) for im in images]
    np.testing.assert_allclose(centre, forward_one_by_one(net, manual), rtol=1e-5, atol=1e-7)


def test_classifier_refuses_images_smaller_than_its_crops(grey_lenet):
    with pytest.raises(MinicaffeError, match=r"image_dims \(20, 20\)"):
        Classifier(*grey_lenet, image_dims=(20, 20))


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    """A 40 x 50 RGB PNG of seeded noise, and its pixels as load_image gives them."""
    pixels = np.random.default_rng(5).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("picture") / "noise.png"
    Image.fromarray(pixels).save(path)
    return path, (pixels / 255.0).astype(np.float32)


def bgr_blob(rgb_crop, mean):
    """The preprocessing Detector is given below, by hand: warp to 28 x 28, RGB -> BGR
    channels first, x 255, minus the per-channel mean."""
    warped = resize_image(rgb_crop, (28, 28))
    return warped.transpose(2, 0, 1)[::-1] * 255 - mean[:, None, None]


def test_detect_windows_equals_crop_warp_and_forward(colour_lenet, picture):
    model, weights = colour_lenet
    path, image = picture
    mean = np.array([104.0, 117.0, 123.0])
    detector = Detector(model, weights, mean=mean, raw_scale=255, channel_swap=(2, 1, 0))
    windows = [(0, 0, 28, 28), (5, 10, 25, 40), (10, 3, 40, 20)]
    detections = detector.detect_windows([(str(path), windows[:2]), (str(path), windows[2:])])
    assert [d["window"] for d in detections] == windows
    assert [d["filename"] for d in detections] == [str(path)] * 3

    net = Net(model, weights, TEST)
    manual = [bgr_blob(image[y0:y1, x0:x1], mean) for y0, x0, y1, x1 in windows]
    expected = forward_one_by_one(net, manual)
    np.testing.assert_allclose([d["prediction"] for d in detections], expected, rtol=1e-5, atol=1e-7)
    assert detector.detect_windows([(str(path), [])]) == []


def test_context_padding(colour_lenet, picture):
    model, weights = colour_lenet
    _, image = picture
    mean = np.array([104.0, 117.0, 123.0])  # BGR, in [0, 255]
    detector = Detector(model, weights, mean=mean, raw_scale=255, channel_swap=(2, 1, 0),
                        context_pad=4)
    assert tuple(detector.crop_dims) == (28, 28, 3)
    # The window rows/columns 10..29 (20 pixels, centre 20) must fill the inner
    # 28 - 2 * 4 = 20 net pixels: the box grows by 28 / 20 to 20 +- 14, i.e. 6..34,
    # 29 pixels counted inclusively, warped to 28 with nothing outside the image.
    crop = detector.crop(image, np.array([10, 10, 29, 29]))
    assert crop.shape == (28, 28, 3)
    np.testing.assert_array_equal(crop, image[6:34, 6:34])
    # In the corner, the enlarged box leaves the image at the top and left: that
    # border is the mean pixel in image terms (RGB, / 255), which preprocessing zeroes.
    corner = detector.crop(image, np.array([0, 0, 19, 19]))
    np.testing.assert_allclose(corner[0, 0], mean[::-1] / 255, rtol=1e-6)
    np.testing.assert_allclose(detector.transformer.preprocess("data", corner)[:, 0, 0], 0, atol=1e-4)


def test_selective_search_without_its_package_says_what_is_missing(colour_lenet, picture, monkeypatch):
    monkeypatch.setitem(sys.modules, "selective_search_ijcv_with_python", None)  # import fails
    detector = Detector(*colour_lenet)
    with pytest.raises(MinicaffeError, match="selective_search_ijcv_with_python.*detect_windows"):
        detector.detect_selective_search([str(picture[0])])
