r"""DataTransformer: Datum pixels to the float input of a net (Caffe's `data_transformer.cpp`).

For each image of C x H x W values $x$ (uint8 pixels, or a Datum's `float_data`) it
produces C x h x w floats:

$$ y_{c,i,j} = \bigl(x_{c,\,h_0+i,\,w_0+j'} - \mu_{c,\,h_0+i,\,w_0+j'}\bigr)\cdot s,
   \qquad j' = \begin{cases} w-1-j & \text{mirrored} \\ j & \text{otherwise} \end{cases} $$

* crop (`crop_size` = h = w > 0): offsets $h_0, w_0$ uniform in $[0, H-h]$, $[0, W-w]$
  in TRAIN; centred, $\lfloor (H-h)/2 \rfloor$, in TEST. No crop: h = H, w = W.
* mirror: flip left-right with probability 1/2. As in Caffe this happens in both
  phases whenever `mirror: true` (only the crop depends on the phase), so test layers
  normally leave mirror off.
* mean $\mu$: the `mean_file` image (a BlobProto of shape 1 x C x H x W, the *uncropped*
  size: it is cropped along with the pixels), or `mean_value` (one value for every
  channel, or one per channel). Not both.
* scale $s$ multiplies after the mean is subtracted: MNIST's `scale: 0.00390625` (1/256)
  maps pixels into [0, 1).

Arithmetic is float32 in Caffe's order, (x - mean) * scale, so values match Caffe's
bit for bit. Randomness comes from a numpy Generator seeded from `common.rng()` when the
transformer is built: a run with `random_seed` set is repeatable even though the Data
layer transforms on a background thread. `rng_for(k)` gives the generator for batch k
alone, so batch k's crops and flips do not depend on which batches came before it
(what makes a resumed run equal an uninterrupted one).
"""
from __future__ import annotations

import io
from math import prod

import numpy as np

from minicaffe import common, protoio
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.proto import caffe_pb2


def datum_to_array(datum, force_color: bool = False, force_gray: bool = False,
                   name: str = "datum") -> np.ndarray:
    """The Datum's pixels as a (C, H, W) array: uint8 for `data`, float32 for `float_data`.

    An encoded Datum (PNG, JPEG) is decoded with Pillow; colour images come out in BGR
    channel order, the order OpenCV gives Caffe. `force_color`/`force_gray` decode to
    3 or 1 channel(s). `name` (the record key) is for error messages.
    """
    if datum.encoded:
        return _decode(datum.data, force_color, force_gray, name)
    shape = (datum.channels, datum.height, datum.width)
    if min(shape) < 0:
        raise MinicaffeError(f"{name}: Datum has a negative size, {shape[0]}x{shape[1]}x{shape[2]} "
                             f"(channels x height x width)")
    size = prod(shape)  # Python ints: a product of damaged int32 sizes cannot wrap around
    if datum.data:
        if len(datum.data) != size:
            raise MinicaffeError(f"{name}: Datum says {shape[0]}x{shape[1]}x{shape[2]} = {size} "
                                 f"pixels but holds {len(datum.data)} bytes")
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape)
    if len(datum.float_data) != size or size == 0:
        raise MinicaffeError(f"{name}: Datum says {shape[0]}x{shape[1]}x{shape[2]} = {size} "
                             f"values but holds {len(datum.float_data)} float_data values "
                             f"and no pixel bytes")
    return np.asarray(datum.float_data, dtype=np.float32).reshape(shape)


def _decode(data: bytes, force_color: bool, force_gray: bool, name: str) -> np.ndarray:
    from PIL import Image
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as err:  # Pillow's decoders raise many types on broken data: OSError,
        # SyntaxError, ValueError, DecompressionBombError (a header claiming billions of pixels)
        raise MinicaffeError(f"{name}: encoded Datum cannot be decoded as an image "
                             f"({type(err).__name__}: {err})") from None
    if force_gray or (not force_color and image.mode in ("L", "1", "I;16", "I", "F")):
        pixels = np.asarray(image.convert("L"))[None]
    else:
        # HWC RGB -> CHW BGR: OpenCV's channel order, which is what Caffe's models expect.
        pixels = np.asarray(image.convert("RGB"))[:, :, ::-1].transpose(2, 0, 1)
    return np.ascontiguousarray(pixels, dtype=np.uint8)


class DataTransformer:
    """Crop, mirror, subtract the mean and scale batches of images; see the module docstring.

    `owner` names the layer in error messages, e.g. "Data layer 'mnist'".
    """

    def __init__(self, transform_param, phase=caffe_pb2.TRAIN, owner: str = "DataTransformer"):
        p = transform_param
        self.param, self.phase, self.owner = p, phase, owner
        if p.HasField("mean_file") and len(p.mean_value):
            raise MinicaffeError(f"{owner}: cannot specify mean_file and mean_value at the "
                                 f"same time; give one")
        if p.force_color and p.force_gray:
            raise MinicaffeError(f"{owner}: cannot set both force_color and force_gray")
        self.scale = np.float32(p.scale)
        self.mean = None
        if p.HasField("mean_file"):
            blob = Blob(name=p.mean_file)
            blob.from_proto(protoio.read_binary(p.mean_file, caffe_pb2.BlobProto()))
            if blob.num_axes == 4 and blob.shape[0] == 1:
                self.mean = blob.cpu_data()[0].copy()
            else:
                raise MinicaffeError(f"{owner}: mean_file {p.mean_file!r} holds a blob of shape "
                                     f"{blob.shape}; a mean image is 1 x C x H x W")
        self.mean_values = np.asarray(p.mean_value, dtype=np.float32) if len(p.mean_value) else None
        self.seed = int(common.rng().integers(2**63))
        self.rng = np.random.default_rng(self.seed)

    def rng_for(self, batch_index: int) -> np.random.Generator:
        """A generator for batch `batch_index` alone, derived from the setup seed."""
        return np.random.default_rng([self.seed, int(batch_index)])

    def datum_to_array(self, datum, name: str = "datum") -> np.ndarray:
        return datum_to_array(datum, self.param.force_color, self.param.force_gray, name)

    def output_shape(self, image_shape) -> tuple[int, int, int]:
        """(C, h, w) of the transformed image for an input of (C, H, W); checks the params.

        Caffe's InferBlobShape, with its CHECKs turned into errors that say what to fix.
        """
        c, h, w = (int(d) for d in image_shape)
        crop = self.param.crop_size
        if c <= 0:
            raise MinicaffeError(f"{self.owner}: image has {c} channels")
        if crop and (h < crop or w < crop):
            raise MinicaffeError(f"{self.owner}: crop_size {crop} is larger than the "
                                 f"{h}x{w} image")
        if self.mean is not None and self.mean.shape != (c, h, w):
            raise MinicaffeError(f"{self.owner}: mean_file {self.param.mean_file!r} has shape "
                                 f"{self.mean.shape} (C, H, W) but the images are {(c, h, w)}; "
                                 f"the mean must be the uncropped image size")
        if self.mean_values is not None and len(self.mean_values) not in (1, c):
            raise MinicaffeError(f"{self.owner}: {len(self.mean_values)} mean_value(s) for {c} "
                                 f"channel(s); specify either 1 mean_value or as many as channels")
        return (c, crop, crop) if crop else (c, h, w)

    def transform(self, images, rng: np.random.Generator | None = None) -> np.ndarray:
        """Transform a batch (N, C, H, W) of pixels into float32 (N, C, h, w).

        `rng` draws the crops and flips (default: the transformer's own generator).
        """
        images = np.asarray(images)
        n, c, h, w = images.shape
        _, out_h, out_w = self.output_shape((c, h, w))
        x = images.astype(np.float32)
        if self.mean is not None:
            x -= self.mean
        elif self.mean_values is not None:
            x -= self.mean_values.reshape(-1, 1, 1)
        x *= self.scale
        rng = self.rng if rng is None else rng
        # Caffe draws the flip first, then the crop offsets.
        mirror = rng.integers(0, 2, n).astype(bool) if self.param.mirror else np.zeros(n, bool)
        crop = self.param.crop_size
        if crop and self.phase == caffe_pb2.TRAIN:
            h_off, w_off = rng.integers(0, h - crop + 1, n), rng.integers(0, w - crop + 1, n)
        else:
            h_off, w_off = np.full(n, (h - out_h) // 2), np.full(n, (w - out_w) // 2)
        if not crop and not mirror.any():
            return x
        # Each image's own crop window and flip, gathered in one fancy-indexing step.
        rows = h_off[:, None] + np.arange(out_h)                       # (n, out_h)
        cols = w_off[:, None] + np.where(mirror[:, None], np.arange(out_w)[::-1],
                                         np.arange(out_w))            # (n, out_w)
        return x[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]

    def transform_datum(self, datum, rng: np.random.Generator | None = None) -> np.ndarray:
        """One Datum to a float32 (C, h, w) array."""
        return self.transform(self.datum_to_array(datum)[None], rng)[0]
