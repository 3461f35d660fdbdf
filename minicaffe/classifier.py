"""Classifier: a Net that takes images and returns class probabilities (pycaffe's `caffe.Classifier`).

    net = Classifier("deploy.prototxt", "weights.caffemodel", image_dims=(256, 256),
                     mean=np.array([104, 117, 123]), raw_scale=255, channel_swap=(2, 1, 0))
    probs = net.predict([load_image("cat.jpg")])     # (1, 1000)

`predict` follows the recipe of the ImageNet papers:

1. resize every image to `image_dims` (by default the net's own input size);
2. cut crops of the net's input size: with `oversample=True` ten per image (four
   corners, centre, and their mirrors, see `minicaffe.io.oversample`), otherwise the
   single centre crop;
3. preprocess each crop with a `Transformer` (HWC -> CHW, channel swap, raw scale,
   mean, input scale);
4. run the crops through the net, a batch at a time, and read its first output;
5. with oversampling, average the ten predictions of each image. Averaging over
   shifted and mirrored views smooths out the net's sensitivity to exact placement.
"""
from __future__ import annotations

import numpy as np

from minicaffe.common import MinicaffeError
from minicaffe.io.transformer import Transformer, crop_corners, oversample as ten_crops, resize_image
from minicaffe.net import TEST, Net


def configure_transformer(net: Net, mean, input_scale, raw_scale, channel_swap) -> Transformer:
    """The Transformer that Classifier and Detector put in front of `net`'s first input:
    H x W x C images in, with the optional preprocessing settings."""
    if not net.inputs:
        raise MinicaffeError(f"{net.source}: the net has no Input layer, so there is no input "
                             "blob to feed images to")
    in_ = net.inputs[0]
    transformer = Transformer({in_: net.blobs[in_].data.shape})
    transformer.set_transpose(in_, (2, 0, 1))
    if mean is not None:
        transformer.set_mean(in_, mean)
    if input_scale is not None:
        transformer.set_input_scale(in_, input_scale)
    if raw_scale is not None:
        transformer.set_raw_scale(in_, raw_scale)
    if channel_swap is not None:
        transformer.set_channel_swap(in_, channel_swap)
    return transformer


class Classifier(Net):
    """A TEST-phase Net over `model_file` and `pretrained_file`, with `predict` for images.

    `image_dims` (height, width) is the size images are resized to before cropping; it
    defaults to the net's input size (one whole-image crop). `mean`, `input_scale`,
    `raw_scale` and `channel_swap` configure `self.transformer` (see
    `minicaffe.io.Transformer`); the transpose HWC -> CHW is always set.
    """

    def __init__(self, model_file, pretrained_file, image_dims=None, mean=None,
                 input_scale=None, raw_scale=None, channel_swap=None):
        super().__init__(model_file, TEST, weights=pretrained_file)
        self.transformer = configure_transformer(self, mean, input_scale, raw_scale, channel_swap)
        self.crop_dims = np.array(self.blobs[self.inputs[0]].data.shape[2:])
        if image_dims is None or len(image_dims) == 0:
            image_dims = self.crop_dims
        self.image_dims = tuple(int(d) for d in image_dims)
        if any(i < c for i, c in zip(self.image_dims, self.crop_dims)):
            raise MinicaffeError(f"{self.source}: image_dims {self.image_dims} are smaller than "
                                 f"the net's input crops {tuple(self.crop_dims)}")

    def predict(self, inputs, oversample: bool = True) -> np.ndarray:
        """Class scores (the net's first output) for each H x W x K image in `inputs`.

        Returns an N x classes array: the average over the ten crops of each image when
        `oversample`, else the score of its centre crop.
        """
        inputs = list(inputs)
        if not inputs:
            raise MinicaffeError("Classifier.predict: no images given")
        resized = np.stack([resize_image(im, self.image_dims) for im in inputs])
        if oversample:
            crops = ten_crops(resized, self.crop_dims)
        else:
            top, left = crop_corners(self.image_dims, self.crop_dims)[4]  # the centre crop
            h, w = self.crop_dims
            crops = resized[:, top:top + h, left:left + w]
        in_ = self.inputs[0]
        caffe_in = np.stack([self.transformer.preprocess(in_, crop) for crop in crops])
        predictions = self.forward_all(**{in_: caffe_in})[self.outputs[0]]
        if oversample:
            predictions = predictions.reshape(len(inputs), 10, -1).mean(axis=1)
        return predictions
