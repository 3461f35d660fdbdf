"""`minicaffe extract_features`: blobs of a trained net, image by image, into databases
of Datums (Caffe's `tools/extract_features.cpp`).

    minicaffe extract_features WEIGHTS.caffemodel MODEL.prototxt BLOB1[,BLOB2...]
        DB1[,DB2...] NUM_MINI_BATCHES DB_TYPE [CPU|GPU] [DEVICE_ID]

The net is built in the TEST phase with the weights copied in, then run forward
NUM_MINI_BATCHES times; its data layers supply the batches. For each named blob, each
item n of each batch becomes one Datum of `float_data` with the blob's legacy channels,
height and width (1 for missing axes), stored under a 10-digit key counting items from
0000000000. There must be as many databases as blobs.
"""
from __future__ import annotations

import logging

from minicaffe.common import MinicaffeError
from minicaffe.proto import caffe_pb2
from minicaffe.tools.convert_imageset import COMMIT_EVERY, open_writer

log = logging.getLogger("minicaffe.extract_features")


def extract_features(weights, model, blob_names, dataset_names, num_mini_batches: int,
                     db_type: str = "lmdb") -> list[int]:
    """Write the features; return how many items each database received."""
    from minicaffe.net import TEST, Net

    blob_names = blob_names.split(",") if isinstance(blob_names, str) else list(blob_names)
    dataset_names = dataset_names.split(",") if isinstance(dataset_names, str) else list(dataset_names)
    if len(blob_names) != len(dataset_names):
        raise MinicaffeError(f"extract_features: {len(blob_names)} blob name(s) but "
                             f"{len(dataset_names)} database name(s); give one database per blob")
    if num_mini_batches < 1:
        raise MinicaffeError(f"extract_features: num_mini_batches must be at least 1, got {num_mini_batches}")
    net = Net(model, TEST)
    net.copy_trained_layers_from(weights)
    for name in blob_names:
        if name not in net.blobs:
            raise MinicaffeError(f"extract_features: unknown feature blob name {name!r} in the "
                                 f"network {str(model)!r}; it has {', '.join(net.blobs)}")
    writers = []
    try:
        for name in dataset_names:
            log.info("Opening dataset %s", name)
            writers.append(open_writer(name, db_type))
        log.info("Extracting Features")
        counts = [0] * len(blob_names)
        datum = caffe_pb2.Datum()
        for _ in range(num_mini_batches):
            net.forward()
            for i, name in enumerate(blob_names):
                blob = net.blobs[name]
                features = blob.cpu_data().reshape(blob.num, -1)
                for item in features:
                    datum.Clear()
                    datum.channels, datum.height, datum.width = blob.channels, blob.height, blob.width
                    datum.float_data.extend(item.tolist())
                    writers[i].put(f"{counts[i]:010d}", datum.SerializeToString())
                    counts[i] += 1
                    if counts[i] % COMMIT_EVERY == 0:
                        log.info("Extracted features of %d query images for feature blob %s",
                                 counts[i], name)
        for name, count in zip(blob_names, counts):
            log.info("Extracted features of %d query images for feature blob %s", count, name)
    finally:
        for writer in writers:
            writer.close()
    log.info("Successfully extracted the features!")
    return counts


def run(args) -> int:
    from minicaffe.engine import select_mode
    mode = (args.mode or "CPU").upper()
    if mode not in ("CPU", "GPU"):
        raise MinicaffeError(f"extract_features: the mode is CPU or GPU, got {args.mode!r}")
    select_mode(mode == "GPU", args.device_id, required=True)
    extract_features(args.weights, args.model, args.blobs, args.datasets, args.num_mini_batches,
                     args.db_type)
    return 0


def register(verbs) -> None:
    """Add the `extract_features` verb to the `minicaffe` command's subparsers."""
    p = verbs.add_parser("extract_features", help="write a trained net's blobs, item by item, to databases")
    p.add_argument("weights", metavar="pretrained_net_param", help="the trained .caffemodel")
    p.add_argument("model", metavar="feature_extraction_proto_file", help="the net, with its data layer")
    p.add_argument("blobs", metavar="extract_feature_blob_name1[,name2,...]")
    p.add_argument("datasets", metavar="save_feature_dataset_name1[,name2,...]")
    p.add_argument("num_mini_batches", type=int, help="how many forward passes")
    p.add_argument("db_type", help="the database format (lmdb)")
    p.add_argument("mode", nargs="?", default="CPU", metavar="CPU/GPU", help="the engine (default: CPU)")
    p.add_argument("device_id", nargs="?", type=int, default=0, metavar="DEVICE_ID",
                   help="the OpenCL device for GPU (default: 0)")
    p.set_defaults(func=run)
