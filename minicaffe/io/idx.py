"""IDX files: the simple array format MNIST ships in.

Layout (all integers big-endian):

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64
    byte  3     number of dimensions d
    4*d bytes   the dimensions, uint32 each
    the rest    the elements, row-major

So MNIST's image files start with magic 2051 (0x00000803: uint8, 3-D) and its label
files with 2049 (0x00000801: uint8, 1-D). A file may be gzipped; we tell by its first
two bytes (0x1f 0x8b), never by its name, so `foo-idx3-ubyte` that is really gzip still
loads.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from math import prod
from pathlib import Path

import numpy as np

from minicaffe.common import MinicaffeError

GZIP_MAGIC = b"\x1f\x8b"
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

# IDX type code -> big-endian numpy dtype.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_bytes(path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MinicaffeError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise MinicaffeError(f"{path}: is a directory, expected an IDX file") from None
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise MinicaffeError(f"{path}: corrupt or truncated gzip file ({err})") from None


def parse_idx(data: bytes, name="<bytes>") -> np.ndarray:
    """Decode IDX `data` into a native-endian numpy array (`name` is for messages)."""
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in IDX_DTYPES:
        head = data[:4].hex(" ") or "nothing"
        raise MinicaffeError(f"{name}: not an IDX file (bad magic number: first bytes are "
                             f"{head}; IDX files start with 00 00, a type code 08/09/0b/0c/0d/0e "
                             f"and the number of dimensions)")
    dtype, ndim = IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MinicaffeError(f"{name}: truncated IDX file: header needs {header} bytes, "
                             f"file has {len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = prod(shape) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        what = "truncated" if found < expected else "corrupt"
        raise MinicaffeError(f"{name}: {what} IDX file: shape {shape} of {dtype.name} needs "
                             f"{expected} data bytes, file has {found}")
    try:
        array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    except ValueError as err:  # no data, yet dimensions numpy cannot hold: > 64 of them, or
        # a product past 2**63 beside a zero
        raise MinicaffeError(f"{name}: corrupt IDX file: shape {shape} ({ndim} dimensions) is "
                             f"not an array numpy can hold ({err})") from None
    # uint8 (MNIST) stays a zero-copy view; wider types become native-endian.
    return array if dtype.itemsize == 1 else array.astype(dtype.newbyteorder("="))


def read_idx(path) -> np.ndarray:
    """Read an IDX file (raw or gzipped) into a numpy array of its shape and type."""
    return parse_idx(read_bytes(path), name=str(path))


def idx_magic(path) -> int:
    """The 32-bit magic number of an IDX file (2051 for MNIST images, 2049 for labels)."""
    data = read_bytes(path)
    if len(data) < 4:
        raise MinicaffeError(f"{path}: truncated IDX file: {len(data)} byte(s), no magic number")
    return struct.unpack(">I", data[:4])[0]


def read_images(path) -> np.ndarray:
    """MNIST-style images: a uint8 array (N, rows, cols); magic 2051 required."""
    return _read_checked(path, IMAGES_MAGIC, "image", "(N, rows, cols)")


def read_labels(path) -> np.ndarray:
    """MNIST-style labels: a uint8 array (N,); magic 2049 required."""
    return _read_checked(path, LABELS_MAGIC, "label", "(N,)")


def _read_checked(path, magic: int, what: str, shape: str) -> np.ndarray:
    data = read_bytes(path)
    array = parse_idx(data, name=str(path))
    found = struct.unpack(">I", data[:4])[0]
    if found != magic:
        raise MinicaffeError(f"{path}: incorrect {what} file magic {found} (expected {magic}: "
                             f"uint8 {shape}); are the image and label files swapped?")
    return array


def write_idx(path, array, compress: bool | None = None) -> None:
    """Write `array` as an IDX file; gzip it when `compress` (default: name ends in .gz)."""
    path = Path(path)
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise MinicaffeError(f"{path}: IDX cannot store dtype {array.dtype}")
    data = (bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
            + array.astype(IDX_DTYPES[code]).tobytes())
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
