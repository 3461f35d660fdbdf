"""`minicaffe compute_image_mean`: the mean image of a database of Datums, as a
binaryproto (Caffe's `tools/compute_image_mean.cpp`).

    minicaffe compute_image_mean [--backend lmdb] INPUT_DB [OUTPUT_FILE]

Every record must have the first one's size; encoded Datums are decoded first, keeping
their own channel count. The sum is kept in float32 in record order, as Caffe keeps it
in its BlobProto, then divided by the count; the result is a 1 x C x H x W BlobProto
(legacy num/channels/height/width fields, as Caffe writes) that `transform_param {
mean_file: ... }` reads. The mean of each channel is logged too (what `mean_value`
would take).
"""
from __future__ import annotations

import logging

import numpy as np

from minicaffe import protoio
from minicaffe.common import MinicaffeError
from minicaffe.data_transformer import datum_to_array
from minicaffe.io.db import open_db
from minicaffe.proto import caffe_pb2

log = logging.getLogger("minicaffe.compute_image_mean")


def compute_image_mean(db_path, output=None, backend: str = "lmdb") -> caffe_pb2.BlobProto:
    """The mean of the database's images as a BlobProto; written to `output` if given."""
    db = open_db(db_path, backend, owner="compute_image_mean")
    if len(db) == 0:
        raise MinicaffeError(f"compute_image_mean: {str(db_path)!r} holds no records")
    total = shape = None
    log.info("Starting iteration")
    for count, (key, value) in enumerate(db.read_many(range(len(db))), 1):
        name = f"record {key.decode(errors='replace')!r} of {str(db_path)!r}"
        try:
            datum = caffe_pb2.Datum.FromString(value)
        except Exception as err:  # protobuf's DecodeError
            raise MinicaffeError(f"compute_image_mean: {name} is not a serialized Datum ({err})") from None
        pixels = datum_to_array(datum, name=name)
        if total is None:
            shape, total = pixels.shape, np.zeros(pixels.shape, np.float32)
        elif pixels.shape != shape:
            raise MinicaffeError(f"compute_image_mean: {name} is {'x'.join(map(str, pixels.shape))} "
                                 f"(C x H x W) but the first record is {'x'.join(map(str, shape))}: "
                                 f"incorrect data field size")
        total += pixels  # float32, one record at a time: Caffe's order and precision
        if count % 10000 == 0:
            log.info("Processed %d files.", count)
    if count % 10000:
        log.info("Processed %d files.", count)
    mean = total / np.float32(count)
    proto = caffe_pb2.BlobProto(num=1, channels=shape[0], height=shape[1], width=shape[2])
    proto.data.extend(mean.ravel().tolist())
    if output:
        log.info("Write to %s", output)
        protoio.write_binary(output, proto)
    log.info("Number of channels: %d", shape[0])
    for c in range(shape[0]):
        log.info("mean_value channel [%d]: %s", c, float(mean[c].astype(np.float64).mean()))
    return proto


def run(args) -> int:
    compute_image_mean(args.input_db, args.output_file, args.backend)
    return 0


def register(verbs) -> None:
    """Add the `compute_image_mean` verb to the `minicaffe` command's subparsers."""
    p = verbs.add_parser("compute_image_mean", help="the mean image of a database, as a binaryproto")
    p.add_argument("input_db", metavar="INPUT_DB", help="the LMDB of Datums")
    p.add_argument("output_file", metavar="OUTPUT_FILE", nargs="?", help="the .binaryproto to write")
    p.add_argument("--backend", "-backend", default="lmdb", help="the database format (lmdb)")
    p.set_defaults(func=run)
