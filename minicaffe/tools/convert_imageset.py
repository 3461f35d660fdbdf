"""`minicaffe convert_imageset`: a list of image files to an LMDB of Datums (Caffe's
`tools/convert_imageset.cpp`).

    minicaffe convert_imageset [--gray] [--shuffle] [--resize_height H --resize_width W]
        [--check_size] [--encoded [--encode_type png]] ROOTFOLDER/ LISTFILE DB_NAME

LISTFILE holds "path label" lines (the label after the last space); each image is read
from ROOTFOLDER + path (plain concatenation, as in Caffe: end the folder with "/"),
decoded in colour (BGR) or grey (`--gray`), optionally resized, and stored under the key
`%08d_path` (its line number in the, possibly shuffled, list). Raw Datums hold the C x H
x W pixels; `--encoded` stores the file's own bytes when they already are in the asked
format and the image is not resized, and re-encodes it otherwise (the format is
`--encode_type`, or guessed from the file name's extension). An image that cannot be read
is reported and skipped, as Caffe does.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from minicaffe import common
from minicaffe.common import MinicaffeError
from minicaffe.io.db import LMDBWriter
from minicaffe.io.image import decode_image, encode_image, read_list_file, resize_bilinear
from minicaffe.proto import caffe_pb2

log = logging.getLogger("minicaffe.convert_imageset")
COMMIT_EVERY = 1000


def open_writer(path, backend: str) -> LMDBWriter:
    """A new database for writing; only LMDB is written here."""
    if backend.lower() != "lmdb":
        raise MinicaffeError(f"backend {backend!r} cannot be written by minicaffe; use --backend lmdb")
    return LMDBWriter(path, commit_every=COMMIT_EVERY)


def _extension(filename: str) -> str:
    return filename.rsplit(".", 1)[-1].lower()


def image_to_datum(path: str, label: int, height: int = 0, width: int = 0,
                   is_color: bool = True, encoding: str = "") -> caffe_pb2.Datum:
    """Caffe's ReadImageToDatum: an image file as a raw or (with `encoding`) encoded Datum.

    Raises MinicaffeError when the file cannot be read or decoded.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise MinicaffeError(f"could not open or find file {path!r}: {err.strerror or err}") from None
    pixels = decode_image(data, is_color, name=f"could not decode {path!r}")
    if height > 0 and width > 0:
        pixels = resize_bilinear(pixels, height, width)
    datum = caffe_pb2.Datum(label=int(label))
    if encoding:
        ext, enc = _extension(path), encoding.lower()
        same_format = ext == enc or (enc, ext) == ("jpg", "jpeg")
        resized = height > 0 and width > 0
        datum.encoded = True
        # The file's own bytes when nothing would change; otherwise encode the pixels.
        datum.data = data if same_format and not resized else encode_image(pixels, encoding)
        return datum
    datum.channels, datum.height, datum.width = pixels.shape
    datum.data = pixels.tobytes()
    return datum


def convert_imageset(root_folder: str, list_file, db_path, *, gray: bool = False,
                     shuffle: bool = False, backend: str = "lmdb", resize_width: int = 0,
                     resize_height: int = 0, check_size: bool = False, encoded: bool = False,
                     encode_type: str = "") -> int:
    """Convert the images of `list_file` to a database; return the number written."""
    lines = read_list_file(list_file, "convert_imageset")
    if shuffle:
        log.info("Shuffling data")
        lines = [lines[i] for i in common.rng().permutation(len(lines))]
    log.info("A total of %d images.", len(lines))
    if encode_type and not encoded:
        log.info("encode_type specified, assuming encoded=true.")
    count, size = 0, None
    with open_writer(db_path, backend) as db:
        for line_id, (filename, label) in enumerate(lines):
            encoding = encode_type
            if (encoded or encode_type) and not encoding:
                encoding = _extension(filename)  # guessed from the file name
            try:
                datum = image_to_datum(root_folder + filename, label, resize_height, resize_width,
                                       not gray, encoding)
            except MinicaffeError as err:
                log.error("%s; skipped", err)
                continue
            if check_size and not datum.encoded:
                if size is None:
                    size = len(datum.data)
                elif len(datum.data) != size:
                    raise MinicaffeError(f"{root_folder + filename}: incorrect data field size "
                                         f"{len(datum.data)}; the first image has {size} "
                                         f"(--check_size)")
            db.put(f"{line_id:08d}_{filename}", datum.SerializeToString())
            count += 1
            if count % COMMIT_EVERY == 0:
                log.info("Processed %d files.", count)
    if count % COMMIT_EVERY:
        log.info("Processed %d files.", count)
    return count


def run(args) -> int:
    if min(args.resize_height, args.resize_width) < 0:
        raise MinicaffeError("--resize_height and --resize_width must not be negative")
    convert_imageset(args.root_folder, args.list_file, args.db_name, gray=args.gray,
                     shuffle=args.shuffle, backend=args.backend, resize_width=args.resize_width,
                     resize_height=args.resize_height, check_size=args.check_size,
                     encoded=args.encoded, encode_type=args.encode_type)
    return 0


def register(verbs) -> None:
    """Add the `convert_imageset` verb to the `minicaffe` command's subparsers."""
    p = verbs.add_parser("convert_imageset",
                         help="convert a list of image files to an LMDB of Datums")
    p.add_argument("root_folder", metavar="ROOTFOLDER/", help="prefixed to every path of the list")
    p.add_argument("list_file", metavar="LISTFILE", help="'path label' lines")
    p.add_argument("db_name", metavar="DB_NAME", help="the database to create")
    flag = argparse.BooleanOptionalAction
    p.add_argument("--gray", "-gray", action=flag, default=False, help="read the images as grey (1 channel)")
    p.add_argument("--shuffle", "-shuffle", action=flag, default=False,
                   help="randomly shuffle the order of the images and their labels")
    p.add_argument("--backend", "-backend", default="lmdb", help="the database format (lmdb)")
    p.add_argument("--resize_width", "-resize_width", type=int, default=0, help="width images are resized to")
    p.add_argument("--resize_height", "-resize_height", type=int, default=0, help="height images are resized to")
    p.add_argument("--check_size", "-check_size", action=flag, default=False,
                   help="check that every image has the size of the first")
    p.add_argument("--encoded", "-encoded", action=flag, default=False,
                   help="store the encoded image (PNG, JPEG, ...) in the Datum")
    p.add_argument("--encode_type", "-encode_type", default="",
                   help="what to encode the images as ('png', 'jpg', ...); implies --encoded")
    p.set_defaults(func=run)
