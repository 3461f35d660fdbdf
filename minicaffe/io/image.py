"""Image files to pixel arrays, as Caffe's `util/io.cpp` reads them through OpenCV.

Caffe's ImageData, WindowData and `convert_imageset` call `ReadImageToCVMat(path,
height, width, is_color)`: decode the file in colour (3 channels, BGR order) or grey
(1 channel), then, when a size is given, resize it with `cv::resize`'s bilinear
interpolation. minicaffe decodes with Pillow and resizes with `resize_bilinear` below,
which computes OpenCV's INTER_LINEAR formula (pixel centres aligned, edge pixels
repeated) in float and rounds to the nearest grey level; OpenCV's fixed-point version
can differ from it by one grey level.

Arrays are C x H x W uint8, the layout of a Datum and of a net's input.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from minicaffe.common import MinicaffeError


def decode_image(data: bytes, is_color: bool = True, name: str = "image") -> np.ndarray:
    """Encoded bytes (PNG, JPEG, ...) to a (C, H, W) uint8 array; C = 3 (BGR) or 1."""
    from PIL import Image
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError, ... on bad data
        raise MinicaffeError(f"{name}: cannot be decoded as an image "
                             f"({type(err).__name__}: {err})") from None
    if not is_color:
        # ITU-R 601 luma, the weights of OpenCV's BGR2GRAY.
        return np.ascontiguousarray(np.asarray(image.convert("L"))[None], dtype=np.uint8)
    # HWC RGB -> CHW BGR: OpenCV's channel order, which Caffe's models expect.
    rgb = np.asarray(image.convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1].transpose(2, 0, 1), dtype=np.uint8)


def _axis_weights(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output index: the two source indices and the weight of the second."""
    scale = src / dst
    x = (np.arange(dst) + 0.5) * scale - 0.5   # the output pixel's centre, in source pixels
    left = np.floor(x).astype(np.int64)
    frac = x - left
    # OpenCV clamps at the borders by repeating the edge pixel.
    frac = np.where(left < 0, 0.0, frac)
    left = np.maximum(left, 0)
    frac = np.where(left >= src - 1, 0.0, frac)
    left = np.minimum(left, src - 1)
    right = np.minimum(left + 1, src - 1)
    return left, right, frac


def resize_bilinear(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize (C, H, W) uint8 pixels to (C, height, width) with OpenCV's INTER_LINEAR formula."""
    c, h, w = pixels.shape
    if (h, w) == (height, width):
        return pixels.copy()
    top, bottom, fy = _axis_weights(h, height)
    left, right, fx = _axis_weights(w, width)
    x = pixels.astype(np.float64)
    rows = x[:, top, :] * (1 - fy)[None, :, None] + x[:, bottom, :] * fy[None, :, None]
    out = rows[:, :, left] * (1 - fx) + rows[:, :, right] * fx
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def read_image(path, height: int = 0, width: int = 0, is_color: bool = True) -> np.ndarray:
    """Caffe's ReadImageToCVMat: the file at `path` as (C, H, W) uint8, resized if
    both `height` and `width` are positive. A missing or unreadable file is an error
    naming the path."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise MinicaffeError(f"could not load {str(path)!r}: {err.strerror or err}") from None
    pixels = decode_image(data, is_color, name=f"could not load {str(path)!r}")
    if height > 0 and width > 0:
        pixels = resize_bilinear(pixels, height, width)
    return pixels


def encode_image(pixels: np.ndarray, fmt: str = "png") -> bytes:
    """(C, H, W) uint8 pixels (BGR or grey) to an encoded file's bytes (cv::imencode)."""
    from PIL import Image
    c = pixels.shape[0]
    image = Image.fromarray(pixels[0] if c == 1 else pixels[::-1].transpose(1, 2, 0))
    fmt = {"jpg": "jpeg"}.get(fmt.lower(), fmt.lower())
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=fmt)
    except (KeyError, ValueError) as err:
        raise MinicaffeError(f"cannot encode an image as {fmt!r} ({err})") from None
    return buffer.getvalue()


def read_list_file(source, owner: str) -> list[tuple[str, int]]:
    """A Caffe list file: one "path label" per line, the label after the *last* space
    (so paths may contain spaces). Blank lines are skipped; an empty list is an error."""
    try:
        text = Path(source).read_text()
    except OSError as err:
        raise MinicaffeError(f"{owner}: cannot open the list file {str(source)!r}: "
                             f"{err.strerror or err}") from None
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        path, _, label = line.rstrip("\r").rpartition(" ")
        try:
            lines.append((path, int(label)))
        except ValueError:
            raise MinicaffeError(f"{owner}: {source}:{number}: expected 'path label' with an "
                                 f"integer label, got {line!r}") from None
    if not lines:
        raise MinicaffeError(f"{owner}: the list file {str(source)!r} is empty")
    return lines
