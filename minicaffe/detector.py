"""Detector: classify windows of images, R-CNN style (pycaffe's `caffe.Detector`).

R-CNN (Girshick et al., 2014, arXiv:1311.2524) detects objects by proposing boxes
("windows"), warping the pixels of each box to the net's fixed input size, whatever
the box's aspect ratio, and classifying each warped crop. `detect_windows` does the
warp-and-classify part for windows you supply; `detect_selective_search` gets them
from Selective Search, an external package.

**Context padding.** A box cut tight around an object loses the surroundings that help
to recognise it. With `context_pad = p`, the box is enlarged so that, once warped to
the net's input of size S, the original box fills the central S - 2p pixels and a
border of p pixels shows its surroundings. Where the enlarged box leaves the image,
that part of the crop is filled with the mean pixel (in raw image values), which the
mean subtraction then turns into zeros.

Windows are (ymin, xmin, ymax, xmax) in pixels. Without context padding the crop is
`im[ymin:ymax, xmin:xmax]`; the context-padding arithmetic treats the box as
inclusive of ymax and xmax, as pycaffe does.
"""
from __future__ import annotations

import os

import numpy as np

from minicaffe.classifier import configure_transformer
from minicaffe.common import MinicaffeError
from minicaffe.io.transformer import load_image, resize_image
from minicaffe.net import TEST, Net

SELECTIVE_SEARCH = "selective_search_ijcv_with_python"


class Detector(Net):
    """A TEST-phase Net that scores image windows; see the module docstring.

    `mean`, `input_scale`, `raw_scale` and `channel_swap` configure `self.transformer`
    (see `minicaffe.io.Transformer`); `context_pad` is the width in net-input pixels of
    the context border (None or 0: none).
    """

    def __init__(self, model_file, pretrained_file, mean=None, input_scale=None,
                 raw_scale=None, channel_swap=None, context_pad=None):
        super().__init__(model_file, TEST, weights=pretrained_file)
        self.transformer = configure_transformer(self, mean, input_scale, raw_scale, channel_swap)
        self.configure_crop(context_pad)

    def detect_windows(self, images_windows) -> list[dict]:
        """Score each window of each image.

        `images_windows` is an iterable of (image filename, list of windows). Returns one
        dict per window, in input order: {"window", "prediction", "filename"}, where the
        prediction is the net's first output for the warped crop.
        """
        images_windows = [(name, list(windows)) for name, windows in images_windows]
        crops = []
        for filename, windows in images_windows:
            image = load_image(filename)
            crops.extend(self.crop(image, window) for window in windows)
        if not crops:
            return []
        in_ = self.inputs[0]
        # preprocess resizes each crop to the net's input size: the R-CNN warp.
        caffe_in = np.stack([self.transformer.preprocess(in_, crop) for crop in crops])
        predictions = self.forward_all(**{in_: caffe_in})[self.outputs[0]]
        detections = []
        for filename, windows in images_windows:
            for window in windows:
                detections.append({"window": window, "prediction": predictions[len(detections)],
                                   "filename": filename})
        return detections

    def detect_selective_search(self, image_fnames) -> list[dict]:
        """`detect_windows` over the windows Selective Search proposes for each image.

        Needs the external `selective_search_ijcv_with_python` package (and the MATLAB
        it runs); without it this is an error saying so.
        """
        try:
            import selective_search_ijcv_with_python as selective_search
        except ImportError:
            raise MinicaffeError(
                f"detect_selective_search needs the external Python package {SELECTIVE_SEARCH!r} "
                "(https://github.com/sergeyk/selective_search_ijcv_with_python, which runs "
                "MATLAB), and it is not installed; compute windows another way and call "
                "detect_windows([(filename, windows), ...])") from None
        # Absolute paths, because the proposals are computed in another process (MATLAB).
        image_fnames = [os.path.abspath(f) for f in image_fnames]
        windows_list = selective_search.get_windows(image_fnames, cmd="selective_search_rcnn")
        return self.detect_windows(zip(image_fnames, windows_list))

    def crop(self, im, window) -> np.ndarray:
        """The pixels of `window` = (ymin, xmin, ymax, xmax) in the H x W x K image `im`,
        with context padding when configured (then already of the net's input size)."""
        window = np.asarray(window)
        if not self.context_pad:
            return im[int(window[0]):int(window[2]), int(window[1]):int(window[3])]

        # The net's input is crop_size square; the box proper must fill the inner
        # crop_size - 2 * context_pad pixels, so it is enlarged by this factor.
        crop_size = self.blobs[self.inputs[0]].width
        scale = crop_size / (crop_size - 2.0 * self.context_pad)
        half_h = (window[2] - window[0] + 1) / 2.0
        half_w = (window[3] - window[1] + 1) / 2.0
        center = (window[0] + half_h, window[1] + half_w)
        box = np.round(np.tile(center, 2) + scale * np.array((-half_h, -half_w, half_h, half_w)))
        # Net-input pixels per image pixel, along each axis.
        scale_h = crop_size / (box[2] - box[0] + 1)
        scale_w = crop_size / (box[3] - box[1] + 1)
        # The part of the box above / left of the image becomes padding at the top / left.
        pad_y = round(max(0.0, -box[0]) * scale_h)
        pad_x = round(max(0.0, -box[1]) * scale_w)

        im_h, im_w = im.shape[:2]
        box = np.clip(box, 0.0, [im_h, im_w, im_h, im_w])
        clip_h = box[2] - box[0] + 1
        clip_w = box[3] - box[1] + 1
        if clip_h <= 0 or clip_w <= 0:
            raise MinicaffeError(f"Detector.crop: window {tuple(window)} lies outside the "
                                 f"{im_h} x {im_w} image")
        # The visible part, warped to its share of the net input, clipped to the crop.
        crop_h = min(round(clip_h * scale_h), crop_size - pad_y)
        crop_w = min(round(clip_w * scale_w), crop_size - pad_x)
        box = box.astype(int)
        context = resize_image(im[box[0]:box[2], box[1]:box[3]], (crop_h, crop_w))
        crop = np.ones(self.crop_dims, dtype=np.float32) * self.crop_mean
        crop[pad_y:pad_y + crop_h, pad_x:pad_x + crop_w] = context
        return crop

    def configure_crop(self, context_pad) -> None:
        """Set the crop size (the net input as H x W x K) and the context padding.

        With context padding, also compute `crop_mean`, the mean that fills padding:
        the transformer's mean taken back to image space (undo the transpose and channel
        swap, divide by raw_scale), so that preprocessing turns it into zeros.
        """
        in_ = self.inputs[0]
        transpose = self.transformer.transpose[in_]
        inverse = np.argsort(transpose)  # blob layout (C, H, W) -> image layout (H, W, C)
        self.crop_dims = np.array(self.blobs[in_].data.shape[1:])[inverse]
        self.context_pad = context_pad
        if not self.context_pad:
            return
        mean = self.transformer.mean.get(in_)
        if mean is None:
            self.crop_mean = np.zeros(self.crop_dims, dtype=np.float32)
            return
        crop_mean = mean.copy().transpose(inverse)
        channel_swap = self.transformer.channel_swap.get(in_)
        if channel_swap is not None:
            crop_mean = crop_mean[:, :, np.argsort(channel_swap)]
        raw_scale = self.transformer.raw_scale.get(in_)
        if raw_scale is not None:
            crop_mean = crop_mean / raw_scale
        self.crop_mean = crop_mean
