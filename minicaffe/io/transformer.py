"""Images in, net inputs out: pycaffe's `Transformer`, `load_image`, `resize_image`, `oversample`.

Python's image libraries and Caffe's nets disagree on nearly everything about an image:

| | a loaded image (`load_image`) | a net input blob |
|---|---|---|
| axes | H x W x C | C x H x W |
| colour order | RGB | BGR (OpenCV's, for models trained by Caffe's tools) |
| value range | [0, 1] floats | often [0, 255], minus a mean image |

`Transformer` bridges them, one input blob at a time. `preprocess` applies, in order:

1. convert to float32 and resize to the blob's H x W (bilinear, channels kept);
2. transpose the axes (`set_transpose`, usually (2, 0, 1): HWC -> CHW);
3. reorder the channels (`set_channel_swap`, usually (2, 1, 0): RGB -> BGR);
4. multiply by `raw_scale` (e.g. 255 to go from [0, 1] to [0, 255]);
5. subtract the mean (per channel, or a whole mean image);
6. multiply by `input_scale` (a scale applied *after* the mean, e.g. 0.017).

Each step is invertible, so `deprocess` undoes 6 to 2 in reverse order (the resize is
lost); that is how one looks at what a net sees, or at an image optimised through a
net's gradients.

`oversample` makes the ten crops of the classic "10-view" test: four corners, the
centre, and the mirror images of all five. Averaging a classifier's predictions over
them is a cheap ensemble (Krizhevsky et al., 2012).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from minicaffe.common import MinicaffeError
from minicaffe.io.blobproto import ArrayError
from minicaffe.io.image import _axis_weights


def _is_permutation(order, n: int) -> bool:
    return sorted(int(i) for i in order) == list(range(n))


class Transformer:
    """Prepare arrays for a net's input blobs, and turn blobs back into images.

    `inputs` maps each input blob's name to its shape, e.g. `{"data": net.blobs["data"].data.shape}`.
    Every setting is per input; an input with no setting for a step skips that step.
    """

    def __init__(self, inputs):
        self.inputs = {name: tuple(int(d) for d in shape) for name, shape in inputs.items()}
        self.transpose: dict[str, tuple[int, ...]] = {}
        self.channel_swap: dict[str, tuple[int, ...]] = {}
        self.raw_scale: dict = {}
        self.mean: dict[str, np.ndarray] = {}
        self.input_scale: dict = {}

    def _check_input(self, in_) -> tuple[int, ...]:
        """The shape of input `in_`; an unknown name is an error listing the known ones."""
        if in_ not in self.inputs:
            raise ArrayError(f"{in_!r} is not one of the inputs this Transformer was made for: "
                             f"{list(self.inputs)}")
        return self.inputs[in_]

    # ---- the settings
    def set_transpose(self, in_, order) -> None:
        """Reorder the axes of one example: (2, 0, 1) turns H x W x C into C x H x W.

        An example has one axis fewer than the blob (no batch axis), so `order` is a
        permutation of that many axes.
        """
        shape = self._check_input(in_)
        if len(order) != len(shape) - 1 or not _is_permutation(order, len(shape) - 1):
            raise ArrayError(f"set_transpose({in_!r}, {tuple(order)}): the order must be a "
                             f"permutation of the {len(shape) - 1} axes of one example of "
                             f"{in_!r} (blob shape {shape})")
        self.transpose[in_] = tuple(int(i) for i in order)

    def set_channel_swap(self, in_, order) -> None:
        """Take the channels in this order, after the transpose: (2, 1, 0) turns RGB into BGR."""
        shape = self._check_input(in_)
        if len(shape) < 2 or len(order) != shape[1] or not _is_permutation(order, shape[1]):
            channels = shape[1] if len(shape) > 1 else 0
            raise ArrayError(f"set_channel_swap({in_!r}, {tuple(order)}): the order must be a "
                             f"permutation of the {channels} channel(s) of {in_!r} "
                             f"(blob shape {shape})")
        self.channel_swap[in_] = tuple(int(i) for i in order)

    def set_raw_scale(self, in_, scale) -> None:
        """Multiply by `scale` before the mean is subtracted: 255 maps [0, 1] images
        onto the [0, 255] range CaffeNet-style models were trained on."""
        self._check_input(in_)
        self.raw_scale[in_] = scale

    def set_input_scale(self, in_, scale) -> None:
        """Multiply by `scale` as the very last step, after the mean is subtracted."""
        self._check_input(in_)
        self.input_scale[in_] = scale

    def set_mean(self, in_, mean) -> None:
        """Subtract `mean`: one value per channel (shape (C,)) or a mean image.

        A mean image is C x H x W (or H x W for one channel), in the blob's layout, i.e.
        after transpose and channel swap, on the raw_scale'd values. If its H x W differs
        from the blob's (the ImageNet mean is 256 x 256, the nets' crops 227 x 227), it
        is resized to fit, as pycaffe does.
        """
        shape = self._check_input(in_)
        mean = np.asarray(mean)
        if not np.issubdtype(mean.dtype, np.floating):
            mean = mean.astype(np.float64)
        channels = shape[1] if len(shape) > 1 else None
        if mean.ndim == 1:
            if mean.shape[0] != channels:
                raise ArrayError(f"set_mean({in_!r}): {mean.shape[0]} per-channel mean value(s) "
                                 f"for an input with {channels} channel(s) (blob shape {shape})")
            mean = mean[:, None, None]  # broadcast over H and W
        else:
            if mean.ndim == 2:
                mean = mean[None]
            if mean.ndim != 3:
                raise ArrayError(f"set_mean({in_!r}): a mean must be (C,) per channel, or a "
                                 f"C x H x W / H x W image; got shape {mean.shape}")
            if len(shape) != 4 or mean.shape[0] != shape[1]:
                raise ArrayError(f"set_mean({in_!r}): a mean image of shape {mean.shape} does "
                                 f"not fit the input's blob shape {shape}")
            if mean.shape[1:] != shape[2:]:
                mean = resize_image(mean.transpose(1, 2, 0), shape[2:]).transpose(2, 0, 1)
        self.mean[in_] = mean

    # ---- the transforms
    def preprocess(self, in_, data) -> np.ndarray:
        """One H' x W' x K example (e.g. from `load_image`) to a float32 example of the
        blob `in_`: resize, transpose, channel swap, raw_scale, mean, input_scale.

        The resize happens when the first two axes differ from the blob's H x W, so
        `data` is expected in H x W x K layout. The caller's array is never modified.
        """
        shape = self._check_input(in_)
        x = np.array(data, dtype=np.float32)  # a copy: the steps below work in place
        if len(shape) == 4 and x.ndim >= 2 and x.shape[:2] != shape[2:]:
            x = resize_image(x, shape[2:])
        if in_ in self.transpose:
            x = x.transpose(self.transpose[in_])
        if in_ in self.channel_swap:
            x = x[list(self.channel_swap[in_])]
        if in_ in self.raw_scale:
            x *= self.raw_scale[in_]
        if in_ in self.mean:
            x -= self.mean[in_]
        if in_ in self.input_scale:
            x *= self.input_scale[in_]
        return x

    def deprocess(self, in_, data) -> np.ndarray:
        """Undo `preprocess` (all but the resize): a blob example back to H x W x K.

        `data` is one example, or a batch of one (its batch axis is dropped). Unlike
        pycaffe, which squeezes every axis of length 1, a one-channel example keeps its
        channel axis, so that `deprocess(preprocess(x))` has x's shape.
        """
        shape = self._check_input(in_)
        x = np.array(data)
        x = x.astype(np.float32) if not np.issubdtype(x.dtype, np.floating) else x
        if x.ndim == len(shape) and x.shape[0] == 1:
            x = x[0]
        if in_ in self.input_scale:
            x /= self.input_scale[in_]
        if in_ in self.mean:
            x += self.mean[in_]
        if in_ in self.raw_scale:
            x /= self.raw_scale[in_]
        if in_ in self.channel_swap:
            x = x[np.argsort(self.channel_swap[in_])]
        if in_ in self.transpose:
            x = x.transpose(np.argsort(self.transpose[in_]))
        return x


# ---------------------------------------------------------------- image files

# skimage's rgb2gray weights (ITU-R BT.709 luma), which pycaffe's load_image uses for
# color=False. They differ from OpenCV's/Pillow's BT.601 weights (0.299, 0.587, 0.114).
LUMA_709 = np.array([0.2125, 0.7154, 0.0721])


def _pillow_to_float(image) -> np.ndarray:
    """A Pillow image as float64 in [0, 1], H x W (grey) or H x W x 3 (colour).

    Integers are divided by their type's maximum (255 for 8-bit, 65535 for 16-bit), as
    skimage's img_as_float does; alpha is dropped without blending.
    """
    mode = image.mode
    if mode == "1":
        return np.asarray(image, dtype=np.float64)
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.float64) / 65535.0
    if mode == "I":
        return np.asarray(image).astype(np.float64) / np.iinfo(np.int32).max
    if mode == "F":
        return np.asarray(image).astype(np.float64)
    if mode in ("L", "LA", "La"):
        return np.asarray(image.convert("L")).astype(np.float64) / 255.0
    # Palettes, CMYK, YCbCr, RGBA, ...: through RGB(A); the alpha is then dropped.
    if mode in ("P", "PA") and ("transparency" in image.info or mode == "PA"):
        image = image.convert("RGBA")
    rgb = np.asarray(image.convert("RGB") if image.mode != "RGBA" else image)[:, :, :3]
    return rgb.astype(np.float64) / 255.0


def load_image(filename, color: bool = True) -> np.ndarray:
    """An image file as float32 H x W x C in [0, 1]: C = 3 (RGB) if `color`, else 1.

    A grey file loaded in colour repeats its one channel three times; a colour file
    loaded with color=False is turned into luminance with BT.709 weights (as pycaffe's
    skimage does). An alpha channel is dropped. Note the RGB order: Caffe's models want
    BGR, which `Transformer.set_channel_swap(in_, (2, 1, 0))` provides.
    """
    from PIL import Image
    path = Path(filename)
    try:
        with Image.open(path) as image:
            image.load()
            pixels = _pillow_to_float(image)
    except OSError as err:
        reason = err.strerror or err
        raise MinicaffeError(f"load_image: could not load {str(path)!r}: {reason}") from None
    if pixels.ndim == 3 and not color:
        pixels = pixels @ LUMA_709
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
        if color:
            pixels = np.repeat(pixels, 3, axis=2)
    return pixels.astype(np.float32)


# ---------------------------------------------------------------- resizing and cropping

def resize_image(im, new_dims, interp_order: int = 1) -> np.ndarray:
    """Resize an H x W x K array (any K, any value range) to new_dims[0] x new_dims[1] x K.

    `interp_order` 1 is bilinear, 0 nearest neighbour. Both place pixel centres at
    half-integers, so an output pixel i samples the source at x = (i + 0.5) * H / H' - 0.5,
    and pixels past the border repeat the edge pixel: the formula of OpenCV's
    INTER_LINEAR, which Caffe's own data layers resize with.

    pycaffe resizes with skimage, whose result depends on its version (zero padding at
    the border with mode='constant', anti-aliasing on shrinking in newer ones); the
    values here can therefore differ from pycaffe's near the border and when shrinking.
    Bilinear interpolation is a weighted mean of neighbours, so, as in pycaffe, the
    result stays within the input's range and a constant image stays exactly constant.
    The result is float32. An H x W array is resized as one channel and stays 2-D.
    """
    im = np.asarray(im)
    height, width = (int(d) for d in new_dims)
    if im.ndim == 2:
        return resize_image(im[:, :, None], (height, width), interp_order)[:, :, 0]
    if im.ndim != 3:
        raise ArrayError(f"resize_image needs an H x W x K array, got shape {im.shape}")
    if height <= 0 or width <= 0 or min(im.shape[:2]) <= 0:
        raise ArrayError(f"resize_image: cannot resize an image of shape {im.shape} "
                         f"to {height} x {width}")
    if interp_order not in (0, 1):
        raise ArrayError(f"resize_image: interp_order {interp_order} is not available; "
                         "minicaffe has 0 (nearest) and 1 (bilinear)")
    h, w = im.shape[:2]
    if (h, w) == (height, width):
        return im.astype(np.float32)  # a copy, as a resize would give
    lo, hi = im.min(), im.max()
    if lo == hi:
        # A constant image: avoid rounding in the weighted sums, give the constant.
        return np.full((height, width, im.shape[2]), lo, dtype=np.float32)
    x = im.astype(np.float64)
    if interp_order == 0:
        rows = np.minimum(np.floor((np.arange(height) + 0.5) * h / height).astype(int), h - 1)
        cols = np.minimum(np.floor((np.arange(width) + 0.5) * w / width).astype(int), w - 1)
        return x[rows][:, cols].astype(np.float32)
    top, bottom, fy = _axis_weights(h, height)
    left, right, fx = _axis_weights(w, width)
    fy, fx = fy[:, None, None], fx[None, :, None]
    rows = x[top] * (1 - fy) + x[bottom] * fy
    out = rows[:, left] * (1 - fx) + rows[:, right] * fx
    return out.astype(np.float32)


def crop_corners(image_dims, crop_dims) -> list[tuple[int, int]]:
    """The top-left corners (row, column) of the five crops of `oversample`, in its order:
    top-left, top-right, bottom-left, bottom-right, centre."""
    (h, w), (ch, cw) = (int(d) for d in image_dims[:2]), (int(d) for d in crop_dims[:2])
    corners = [(top, left) for top in (0, h - ch) for left in (0, w - cw)]
    # The centre crop starts at floor((h - ch) / 2): pycaffe's centre +- half the crop,
    # truncated to integers, lands there.
    return corners + [((h - ch) // 2, (w - cw) // 2)]


def oversample(images, crop_dims) -> np.ndarray:
    """The ten crops of each H x W x K image: 4 corners and centre, then their mirrors.

    `images` is a sequence (or an N x H x W x K array) of images of one size. The result
    is float32, 10N x crop_h x crop_w x K; image n owns rows 10n .. 10n + 9, the five
    crops (in `crop_corners`' order) followed by the same five flipped left to right.
    """
    images = [np.asarray(im) for im in images]
    if not images:
        raise ArrayError("oversample: no images given")
    shape = images[0].shape
    ch, cw = (int(d) for d in crop_dims[:2])
    if any(im.shape != shape for im in images) or len(shape) != 3:
        raise ArrayError(f"oversample needs H x W x K images all of one shape, got "
                         f"{sorted({im.shape for im in images})}")
    if not (0 < ch <= shape[0] and 0 < cw <= shape[1]):
        raise ArrayError(f"oversample: crops of {ch} x {cw} do not fit in images of "
                         f"{shape[0]} x {shape[1]}")
    crops = np.empty((10 * len(images), ch, cw, shape[2]), dtype=np.float32)
    corners = crop_corners(shape, (ch, cw))
    for n, im in enumerate(images):
        for k, (top, left) in enumerate(corners):
            crop = im[top:top + ch, left:left + cw]
            crops[10 * n + k] = crop
            crops[10 * n + 5 + k] = crop[:, ::-1]  # the mirror image: columns reversed
    return crops
