"""convert_imageset, compute_image_mean and extract_features on real MNIST digits."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minicaffe import protoio
from minicaffe.common import MinicaffeError
from minicaffe.data_transformer import DataTransformer, datum_to_array
from minicaffe.io.db import LMDBReader
from minicaffe.io.idx import read_images, read_labels
from minicaffe.net import TEST, Net
from minicaffe.proto import caffe_pb2
from minicaffe.tools.compute_image_mean import compute_image_mean
from minicaffe.tools.convert_imageset import convert_imageset
from minicaffe.tools.extract_features import extract_features

ROOT = Path(__file__).resolve().parents[1]
MNIST = next((d for d in (ROOT / "data" / "mnist", ROOT.parent / "shared" / "data" / "mnist")
              if (d / "t10k-images-idx3-ubyte.gz").is_file()), ROOT / "data" / "mnist")
N = 20


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    images = read_images(MNIST / "t10k-images-idx3-ubyte.gz")[:N]
    labels = read_labels(MNIST / "t10k-labels-idx1-ubyte.gz")[:N]
    for i, image in enumerate(images):
        Image.fromarray(image).save(root / f"{i:02d}.png")
    (root / "list.txt").write_text("".join(f"{i:02d}.png {l}\n" for i, l in enumerate(labels)))
    return root, images, labels


def records(path):
    with LMDBReader(path) as db:
        return [(k.decode(), caffe_pb2.Datum.FromString(v)) for k, v in db.read_many(range(len(db)))]


def test_convert_imageset_writes_raw_grey_datums_keyed_by_line(digits, tmp_path):
    root, images, labels = digits
    assert convert_imageset(f"{root}/", root / "list.txt", tmp_path / "db", gray=True) == N
    got = records(tmp_path / "db")
    assert [k for k, _ in got] == [f"{i:08d}_{i:02d}.png" for i in range(N)]
    for i, (_, datum) in enumerate(got):
        assert (datum.channels, datum.height, datum.width, datum.label) == (1, 28, 28, labels[i])
        assert not datum.encoded
        np.testing.assert_array_equal(np.frombuffer(datum.data, np.uint8).reshape(28, 28), images[i])


def test_convert_imageset_colour_resize_and_shuffle(digits, tmp_path):
    root, images, labels = digits
    from minicaffe import common
    common.set_random_seed(2)
    convert_imageset(f"{root}/", root / "list.txt", tmp_path / "db", shuffle=True,
                     resize_height=14, resize_width=7)
    got = records(tmp_path / "db")
    names = [k.split("_", 1)[1] for k, _ in got]
    assert sorted(names) == [f"{i:02d}.png" for i in range(N)] and names != sorted(names)
    assert [k.split("_")[0] for k, _ in got] == [f"{i:08d}" for i in range(N)]
    for name, datum in got:
        i = int(name.split("_")[1][:2])
        assert (datum.channels, datum.height, datum.width, datum.label) == (3, 14, 7, labels[i])


def test_convert_imageset_encoded_keeps_the_file_bytes(digits, tmp_path):
    root, images, _ = digits
    convert_imageset(f"{root}/", root / "list.txt", tmp_path / "png", encoded=True, gray=True)
    got = records(tmp_path / "png")
    assert got[3][1].encoded and got[3][1].data == (root / "03.png").read_bytes()
    # Resized, the image must be re-encoded: it decodes to the resized pixels.
    convert_imageset(f"{root}/", root / "list.txt", tmp_path / "re", encode_type="png", gray=True,
                     resize_height=14, resize_width=14)
    datum = records(tmp_path / "re")[3][1]
    assert datum.encoded
    halved = images[3].reshape(14, 2, 14, 2).astype(np.float64).mean(axis=(1, 3))
    np.testing.assert_array_equal(datum_to_array(datum)[0], np.floor(halved + 0.5))


def test_convert_imageset_skips_unreadable_images_and_checks_sizes(digits, tmp_path):
    root, _, _ = digits
    (tmp_path / "bad.png").write_bytes(b"garbage")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "small.png")
    (tmp_path / "list.txt").write_text(f"{root}/00.png 7\n{tmp_path}/bad.png 1\nmissing.png 2\n{root}/01.png 2\n")
    assert convert_imageset("", tmp_path / "list.txt", tmp_path / "db") == 2
    assert [k for k, _ in records(tmp_path / "db")] == [f"00000000_{root}/00.png", f"00000003_{root}/01.png"]
    (tmp_path / "list2.txt").write_text(f"{root}/00.png 7\n{tmp_path}/small.png 1\n")
    with pytest.raises(MinicaffeError, match=r"small.png: incorrect data field size 75; the first image has 2352"):
        convert_imageset("", tmp_path / "list2.txt", tmp_path / "db2", check_size=True)


def test_compute_image_mean_is_the_pixel_mean_and_feeds_mean_file(digits, tmp_path):
    root, images, _ = digits
    convert_imageset(f"{root}/", root / "list.txt", tmp_path / "db", gray=True)
    proto = compute_image_mean(tmp_path / "db", tmp_path / "mean.binaryproto")
    assert (proto.num, proto.channels, proto.height, proto.width) == (1, 1, 28, 28)
    want = images.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(np.array(proto.data).reshape(28, 28), want, rtol=1e-6)
    param = caffe_pb2.TransformationParameter(mean_file=str(tmp_path / "mean.binaryproto"))
    out = DataTransformer(param).transform(images[:2, None])
    np.testing.assert_allclose(out[:, 0], images[:2] - want.astype(np.float32), atol=1e-4)
    # Encoded records are decoded first and give the same mean.
    convert_imageset(f"{root}/", root / "list.txt", tmp_path / "enc", gray=True, encoded=True)
    assert compute_image_mean(tmp_path / "enc").data == proto.data


def test_compute_image_mean_rejects_mixed_sizes(digits, tmp_path):
    root, _, _ = digits
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "small.png")
    (tmp_path / "l.txt").write_text(f"{root}/00.png 7\n{tmp_path}/small.png 1\n")
    convert_imageset("", tmp_path / "l.txt", tmp_path / "db", gray=True)
    with pytest.raises(MinicaffeError,
                       match=r"record '00000001_.*small.png' .* is 1x5x5 .* first record is 1x28x28"):
        compute_image_mean(tmp_path / "db")


NET = """
name: "features"
layer {{ name: "data" type: "ImageData" top: "data" top: "label"
        transform_param {{ scale: 0.00390625 }}
        image_data_param {{ source: "{list}" root_folder: "{root}/" batch_size: 8 is_color: false }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param {{ num_output: 3 weight_filler {{ type: "gaussian" std: 0.1 }}
                               bias_filler {{ type: "gaussian" std: 1 }} }} }}
"""


def test_extract_features_writes_each_item_as_a_float_datum(digits, tmp_path):
    root, images, _ = digits
    model = tmp_path / "net.prototxt"
    model.write_text(NET.format(list=root / "list.txt", root=root))
    net = Net(str(model), TEST)
    net.save(tmp_path / "w.caffemodel")
    w, b = (p.cpu_data().copy() for p in net.params["ip"])
    counts = extract_features(tmp_path / "w.caffemodel", str(model), "ip,data",
                              f"{tmp_path / 'ip_db'},{tmp_path / 'data_db'}", 3, "lmdb")
    assert counts == [24, 24]
    got = records(tmp_path / "ip_db")
    assert [k for k, _ in got] == [f"{i:010d}" for i in range(24)]
    x = images.reshape(N, -1).astype(np.float32) * np.float32(0.00390625)
    for i, (_, datum) in enumerate(got):
        assert (datum.channels, datum.height, datum.width) == (3, 1, 1)
        np.testing.assert_allclose(datum.float_data, x[i % N] @ w.T + b, rtol=1e-5, atol=1e-6)
    datum = records(tmp_path / "data_db")[21][1]
    assert (datum.channels, datum.height, datum.width) == (1, 28, 28)
    np.testing.assert_array_equal(np.array(datum.float_data, np.float32), x[1])
    with pytest.raises(MinicaffeError, match="unknown feature blob name 'fc7'"):
        extract_features(tmp_path / "w.caffemodel", str(model), "fc7", str(tmp_path / "x"), 1, "lmdb")
    with pytest.raises(MinicaffeError, match="2 blob name.* but 1 database name"):
        extract_features(tmp_path / "w.caffemodel", str(model), "ip,data", str(tmp_path / "x"), 1, "lmdb")


def cli(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "minicaffe", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True)


def test_the_cli_verbs(digits, tmp_path):
    root, images, _ = digits
    done = cli("convert_imageset", "-gray", "--resize_height", 14, "--resize_width", 14,
               f"{root}/", root / "list.txt", tmp_path / "db")
    assert done.returncode == 0, done.stderr
    assert "A total of 20 images." in done.stderr and "Processed 20 files." in done.stderr
    done = cli("compute_image_mean", tmp_path / "db", tmp_path / "mean.binaryproto")
    assert done.returncode == 0, done.stderr
    mean = protoio.read_binary(tmp_path / "mean.binaryproto", caffe_pb2.BlobProto())
    assert (mean.channels, mean.height, mean.width) == (1, 14, 14)
    assert "mean_value channel [0]:" in done.stderr
    done = cli("compute_image_mean", tmp_path / "nope")
    assert done.returncode == 1 and done.stderr.startswith("minicaffe: error: ") and "nope" in done.stderr
    assert "Traceback" not in done.stderr
    done = cli("convert_imageset", f"{root}/", tmp_path / "missing.txt", tmp_path / "db2")
    assert done.returncode == 1 and "cannot open the list file" in done.stderr
