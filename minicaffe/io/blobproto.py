"""numpy arrays to and from Caffe's protobuf messages: BlobProto, BlobProtoVector, Datum.

These are pycaffe's `caffe.io` conversions, for scripts that read a mean file, write a
weights blob by hand or fill an LMDB with Datums.

**BlobProto.** A blob is stored flat: `data` (and optionally `diff`) hold the values in
C order, and the shape says how to fold them. Caffe has two ways of writing the shape:

* the legacy fields `num`, `channels`, `height`, `width` (any of them set means a 4-D
  blob, N x C x H x W; mean files written by `compute_image_mean` look like this);
* the `shape` message with one `dim` per axis (everything newer).

A blob with no shape at all is read the way Caffe's `Blob::FromProto` reads it: as a
scalar, with zero axes. A scalar holds exactly one value, so a shapeless blob with any
other number of values is an error rather than a guess.

Values travel as 32-bit floats (`repeated float`). pycaffe hands them back as float64
arrays (numpy's default for Python floats); so do we, so that results compare equal.
Caffe can also write `double_data` / `double_diff`; those are read when the float
fields are empty.

**Datum.** One training example in an LMDB: a C x H x W array, either as raw uint8
pixels in the `data` bytes or as `float_data`, plus an optional integer `label`.
"""
from __future__ import annotations

from math import prod

import numpy as np
from google.protobuf.message import DecodeError

from minicaffe.blob import stored_shape
from minicaffe.common import MinicaffeError
from minicaffe.proto import caffe_pb2


class ArrayError(MinicaffeError, ValueError):
    """An array, blob or Datum that does not fit what was asked of it.

    It is a MinicaffeError (the CLI prints it without a traceback) and a ValueError,
    which is what pycaffe raises in these cases, so `except ValueError` keeps working.
    """


def blobproto_to_array(blob, return_diff: bool = False) -> np.ndarray:
    """A BlobProto's `data` (or its `diff`, when `return_diff`) as an array of its shape.

    A blob without any shape is a scalar and gives a 0-d array; it must hold exactly one
    value. Wrong counts are an `ArrayError` (a ValueError) saying what was expected.
    """
    which = "diff" if return_diff else "data"
    values = getattr(blob, which)
    if not len(values):
        values = getattr(blob, "double_" + which)
    values = np.array(values, dtype=np.float64)

    shape = stored_shape(blob)
    if shape is None:
        if values.size != 1:
            raise ArrayError(f"BlobProto has no shape (neither shape.dim nor num/channels/height/"
                             f"width) and holds {values.size} {which} values; without a shape "
                             "only a single value (a scalar) can be read")
        shape = ()
    if values.size != prod(shape):
        raise ArrayError(f"BlobProto of shape {shape} needs {prod(shape)} {which} values, "
                         f"it holds {values.size}")
    return values.reshape(shape)


def array_to_blobproto(arr, diff=None) -> caffe_pb2.BlobProto:
    """A BlobProto holding `arr` (any number of axes) and, if given, `diff` of the same shape.

    The shape is written as `shape.dim` (the modern form). The `shape` field is set even
    for a 0-d array, so that the scalar reads back as a scalar.
    """
    arr = np.asarray(arr)
    blob = caffe_pb2.BlobProto()
    blob.shape.SetInParent()
    blob.shape.dim.extend(arr.shape)
    blob.data.extend(arr.astype(np.float64).ravel())
    if diff is not None:
        diff = np.asarray(diff)
        if diff.shape != arr.shape:
            raise ArrayError(f"array_to_blobproto: diff has shape {diff.shape}, "
                             f"the data has shape {arr.shape}; they must match")
        blob.diff.extend(diff.astype(np.float64).ravel())
    return blob


def arraylist_to_blobprotovector_str(arraylist) -> bytes:
    """Arrays to the serialized bytes of a BlobProtoVector (one BlobProto each)."""
    vector = caffe_pb2.BlobProtoVector()
    vector.blobs.extend(array_to_blobproto(arr) for arr in arraylist)
    return vector.SerializeToString()


def blobprotovector_str_to_arraylist(serialized: bytes) -> list[np.ndarray]:
    """The arrays in the serialized bytes of a BlobProtoVector, in order."""
    vector = caffe_pb2.BlobProtoVector()
    try:
        vector.ParseFromString(serialized)
    except DecodeError as err:
        raise ArrayError(f"the bytes are not a serialized BlobProtoVector ({err})") from None
    return [blobproto_to_array(blob) for blob in vector.blobs]


def array_to_datum(arr, label=None) -> caffe_pb2.Datum:
    """A Datum holding the C x H x W array `arr`, and `label` when one is given.

    uint8 arrays are stored as raw bytes in `data` (what `convert_imageset` writes and
    the Data layer reads fastest); any other dtype goes to `float_data`. The label is
    left unset when None, so the message stays smaller, as in pycaffe.
    """
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise ArrayError(f"array_to_datum needs a 3-D array (channels x height x width), "
                         f"got shape {arr.shape}")
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = arr.shape
    if arr.dtype == np.uint8:
        datum.data = np.ascontiguousarray(arr).tobytes()
    else:
        datum.float_data.extend(arr.astype(np.float64).ravel())
    if label is not None:
        datum.label = int(label)
    return datum


def datum_to_array(datum) -> np.ndarray:
    """A Datum's C x H x W array (its label is `datum.label`).

    Raw pixels come back as uint8, `float_data` as float64 (as in pycaffe). An encoded
    Datum (a PNG or JPEG file in `data`) is decoded, colour as BGR like OpenCV does.
    """
    if datum.encoded:
        from minicaffe.data_transformer import datum_to_array as decode_datum
        return decode_datum(datum)
    shape = (datum.channels, datum.height, datum.width)
    if len(datum.data):
        if len(datum.data) != prod(shape) or min(shape) < 0:
            raise ArrayError(f"Datum says {shape[0]}x{shape[1]}x{shape[2]} (channels x height x "
                             f"width) but holds {len(datum.data)} pixel bytes")
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape).copy()
    if len(datum.float_data) != prod(shape) or min(shape) < 0:
        raise ArrayError(f"Datum says {shape[0]}x{shape[1]}x{shape[2]} (channels x height x "
                         f"width) but holds {len(datum.float_data)} float_data values")
    return np.array(datum.float_data, dtype=np.float64).reshape(shape)
