"""Fuzzing every parser: damaged inputs load, or fail with a MinicaffeError naming the file.

Each property takes a real file minicaffe reads, damages it the way disks, downloads
and hand edits do, and checks the one contract every reader keeps: the input loads (a
mutation can be harmless), or the reader raises `MinicaffeError` whose message names the
file at fault. Never another exception type, a hang, or a runaway allocation.

* prototxt: the shipped `examples/mnist` nets and solver, with characters deleted,
  inserted or swapped, lines duplicated or dropped, tokens and numbers replaced, the
  text truncated. Whatever still parses is also built (`Net` in both phases, run
  forward when small; the solver with its nets), so semantic errors count too.
* binary protobuf: a saved LeNet `.caffemodel`, a `.solverstate`, a mean
  `.binaryproto`, truncated and bit-flipped (often at the wire format's tags and
  lengths, where a flip changes structure rather than one weight).
* IDX: MNIST's image and label files, raw and gzipped, with damaged headers and payloads.
* LMDB: records replaced by random bytes, truncated or bit-flipped Datums, Datums whose
  shape contradicts their data, float_data of the wrong size, encoded=True with a broken
  image; read by the Data layer (with and without prefetch threads) and by a whole net.

Each case runs under a time limit and an address-space limit, so a hang or a blow-up
fails the case instead of the machine.

Run length. Every property tries `MINICAFFE_FUZZ_EXAMPLES` cases; unset, it takes the
hypothesis profile's count (tests/conftest.py), at most 20, so the file takes well under
a minute in CI. Under the `ci` profile the cases are derandomized (the same every run);
under `dev` each run draws new ones. A long run, on demand:

    MINICAFFE_FUZZ_EXAMPLES=2000 python -m pytest tests/test_fuzz.py -q -p no:cacheprovider

`MINICAFFE_FUZZ_SECONDS` (default 60) is the time limit of one case.
"""
from __future__ import annotations

import contextlib
import gc
import gzip
import io
import logging
import os
import re
import resource
import shutil
import signal
import tempfile
import threading
from pathlib import Path

import lmdb
import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from minicaffe import cli, common, protoio
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.data_transformer import DataTransformer
from minicaffe.io import db as db_module
from minicaffe.io.db import LMDBReader
from minicaffe.io.idx import idx_magic, read_idx, read_images, read_labels, write_idx
from minicaffe.io.mnist import convert_mnist_data
from minicaffe.layer import create_layer
from minicaffe.net import TEST, TRAIN, Net
from minicaffe.proto import caffe_pb2
from minicaffe.solvers import get_solver
from tests.strategies import layer_param

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "mnist"
MNIST = next((d for d in (REPO / "data" / "mnist", REPO.parent / "shared" / "data" / "mnist")
              if (d / "t10k-images-idx3-ubyte.gz").is_file()), REPO / "data" / "mnist")
N_RECORDS = 8  # digits in the fuzzed LMDB
GLOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ [\w.]+:\d+\] ")

FUZZ_EXAMPLES = int(os.environ.get("MINICAFFE_FUZZ_EXAMPLES") or min(settings.default.max_examples, 20))
CASE_SECONDS = float(os.environ.get("MINICAFFE_FUZZ_SECONDS", "60"))
# Address space one case may add: far above what any of these inputs legitimately
# needs (LeNet is a few MB), far below what a runaway allocation asks for.
MEMORY_HEADROOM = 3 << 30

fuzz = settings(max_examples=FUZZ_EXAMPLES, deadline=None)
CASES = {"tried": 0}  # counted across the module, reported at its end


# ---------------------------------------------------------------- guards

class CaseTimeout(Exception):
    pass


@contextlib.contextmanager
def guarded():
    """Run one case under a wall-clock limit (SIGALRM) and an address-space limit.

    The memory limit turns "allocate 40 GB" into a prompt MemoryError, which the
    library must report as a MinicaffeError like any other bad input.
    """
    CASES["tried"] += 1
    timed_out = []

    def on_alarm(signum, frame):
        timed_out.append(True)
        raise CaseTimeout(f"case ran longer than {CASE_SECONDS} s")

    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    used = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    limit = used + MEMORY_HEADROOM if hard == resource.RLIM_INFINITY else min(hard, used + MEMORY_HEADROOM)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        assert not timed_out, f"the case ran longer than {CASE_SECONDS} s (a hang?)"


def loads_or_names(path, action, also=()):
    """The property: `action()` succeeds, or raises MinicaffeError naming `path`.

    `also`: other paths the message may name instead (e.g. the net file whose data
    source is the damaged LMDB). Any other exception fails the case.
    """
    with guarded():
        try:
            action()
        except MinicaffeError as err:
            names = [str(p) for p in (path, *also)]
            assert any(n in str(err) for n in names), f"the error does not name {names}: {err}"
            event("MinicaffeError")  # --hypothesis-show-statistics shows how often each happens
            return err
    event("loaded")
    return None


@pytest.fixture(scope="module", autouse=True)
def quiet_logs():
    """Building thousands of nets logs millions of lines: keep warnings and errors only.
    At the end, print how many cases ran (shown with `pytest -s`)."""
    logger = logging.getLogger("minicaffe")
    old = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(old)
    print(f"\ntest_fuzz: {CASES['tried']} cases tried")


@pytest.fixture(autouse=True)
def cpu_mode_and_seed():
    """A mutated solver may switch the process to GPU mode or reseed: undo it after each test."""
    old_mode, old_rng = common.mode(), common.rng_state()
    yield
    common.set_mode(old_mode)
    common.set_rng_state(old_rng)


# ---------------------------------------------------------------- mutations
# A mutation names its position by a non-negative integer taken modulo the current
# length, so the strategies need not know the input; hypothesis shrinks positions to 0.

TEXT_TOKENS = (
    "{", "}", ":", '"', "#", "\n", "layer", "name", "type", "bottom", "top", "include", "exclude",
    "phase", "TRAIN", "TEST", "param", "lr_mult", "decay_mult", "loss_weight", "propagate_down",
    "num_output", "kernel_size", "stride", "pad", "group", "axis", "dim", "shape", "batch_size",
    "pool", "MAX", "AVE", "STOCHASTIC", "global_pooling", "engine", "CUDNN", "weight_filler",
    "bias_filler", "input_param", "force_backward", "true", "false",
    '"Convolution"', '"Pooling"', '"InnerProduct"', '"ReLU"', '"Data"', '"Input"', '"Split"',
    '"Concat"', '"Flatten"', '"Reshape"', '"Eltwise"', '"Dropout"', '"Accuracy"',
    '"SoftmaxWithLoss"', '"Sigmoid"', '"Softmax"', '"NoSuchLayer"', '""', '"data"', '"label"',
    '"conv1"', '"pool2"', '"ip1"', '"ip2"', '"loss"', '"\\000"', '"\\377"', '"\\303\\251"',
    "0", "1", "2", "3", "-1", "0.5", "-0.5", "1e9", "1e-40", "nan", "inf", "-inf",
    "999999999", "2147483647", "2147483648", "4294967295", "4294967296", "-2147483649",
    "18446744073709551616",
    # solver fields
    "net", "base_lr", "lr_policy", '"step"', '"multistep"', '"poly"', '"sigmoid"', '"inv"',
    '"fixed"', '"exp"', '"nope"', "stepvalue", "stepsize", "gamma", "power", "momentum",
    "momentum2", "delta", "max_iter", "test_iter", "test_interval", "iter_size", "average_loss",
    "snapshot", "snapshot_prefix", "snapshot_format", "HDF5", "solver_mode", "GPU", "device_id",
    "random_seed", "solver_type", "NESTEROV", "ADAM", '"Adam"', '"Nesterov"', '"SGD"', '"Nope"',
    "regularization_type", '"L1"', '"L3"', "clip_gradients", "test_state", "train_state",
    "net_param", "test_net", "train_net", "stage", "level", "display",
)
NUMBERS = st.one_of(
    st.sampled_from([0, 1, 2, -1, 7, 28, 100, 999999999, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
                     2**63, -2**31, -2**63]),
    st.integers(-2**33, 2**33),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
position = st.integers(0, 2**32)


def text_mutation():
    inserted = st.one_of(st.sampled_from(TEXT_TOKENS), st.text(max_size=4),
                         st.sampled_from(TEXT_TOKENS).map(lambda t: f" {t} "))
    return st.one_of(
        st.tuples(st.just("delete"), position, st.integers(1, 16)),
        st.tuples(st.just("insert"), position, inserted),
        st.tuples(st.just("swap"), position),
        st.tuples(st.just("truncate"), position),
        st.tuples(st.just("dup_line"), position),
        st.tuples(st.just("del_line"), position),
        st.tuples(st.just("token"), position, st.sampled_from(TEXT_TOKENS)),
        st.tuples(st.just("number"), position, NUMBERS.map(str)),
    )


def mutate_text(text: str, mutations) -> str:
    for kind, pos, *arg in mutations:
        i = pos % (len(text) + 1)
        if kind == "delete":
            text = text[:i] + text[i + arg[0]:]
        elif kind == "insert":
            text = text[:i] + arg[0] + text[i:]
        elif kind == "swap" and i + 1 < len(text):
            text = text[:i] + text[i + 1] + text[i] + text[i + 2:]
        elif kind == "truncate":
            text = text[:i]
        elif kind in ("dup_line", "del_line"):
            lines = text.splitlines(keepends=True)
            k = pos % max(len(lines), 1)
            if lines:
                lines[k:k + 1] = [lines[k]] * (2 if kind == "dup_line" else 0)
            text = "".join(lines)
        elif kind in ("token", "number"):
            pattern = r"[^\s{}:]+" if kind == "token" else r"(?<=:\s)-?\d+(\.\d*)?(e-?\d+)?"
            spans = [m.span() for m in re.finditer(pattern, text)]
            if spans:
                a, b = spans[pos % len(spans)]
                text = text[:a] + arg[0] + text[b:]
    return text


texts_mutations = st.lists(text_mutation(), min_size=1, max_size=4)


def bytes_mutation():
    # ("structure", k) is the k-th tag / length / varint of a protobuf (or the IDX header);
    # ("anywhere", k) any byte.
    where = st.one_of(st.tuples(st.just("structure"), position), st.tuples(st.just("anywhere"), position))
    return st.one_of(
        st.tuples(st.just("flip"), where, st.integers(0, 7)),
        st.tuples(st.just("set"), where, st.integers(0, 255)),
        st.tuples(st.just("truncate"), where),
        st.tuples(st.just("delete"), where, st.integers(1, 16)),
        st.tuples(st.just("insert"), where, st.binary(min_size=1, max_size=8)),
    )


bytes_mutations = st.lists(bytes_mutation(), min_size=1, max_size=3)


def mutate_bytes(data: bytes, mutations, structure=()) -> bytes:
    data = bytearray(data)
    for kind, (where, k), *arg in mutations:
        if not data and kind != "insert":
            continue
        if where == "structure" and structure:
            i = structure[k % len(structure)] % max(len(data), 1)
        else:
            i = k % max(len(data), 1)
        if kind == "flip":
            data[i] ^= 1 << arg[0]
        elif kind == "set":
            data[i] = arg[0]
        elif kind == "truncate":
            del data[i:]
        elif kind == "delete":
            del data[i:i + arg[0]]
        elif kind == "insert":
            data[i:i] = arg[0]
    return bytes(data)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos


def wire_offsets(data: bytes, descriptor, start: int = 0, end: int | None = None, out=None) -> list[int]:
    """Offsets of the tags, lengths and varints of the protobuf message `data`, sub-messages included.

    Damage there changes the file's structure (a field number, a length, a shape
    dimension) rather than one float of a weight.
    """
    out = [] if out is None else out
    pos, end = start, len(data) if end is None else end
    while pos < end:
        out.append(pos)
        tag, pos = _varint(data, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            out.append(pos)
            _, pos = _varint(data, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 2:
            out.append(pos)
            length, pos = _varint(data, pos)
            field = descriptor.fields_by_number.get(number)
            if field is not None and field.message_type is not None:
                wire_offsets(data, field.message_type, pos, pos + length, out)
            pos += length
        else:
            raise ValueError(f"wire type {wire_type} at {pos}")
    return out


# ---------------------------------------------------------------- the real inputs

@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with real inputs: an LMDB of MNIST digits, the example nets and solver
    pointed at it (small batches), LeNet's weights and solver state, a mean file, IDX files."""
    root = tmp_path_factory.mktemp("fuzz")
    images, labels = MNIST / "t10k-images-idx3-ubyte.gz", MNIST / "t10k-labels-idx1-ubyte.gz"
    db = root / "mnist_lmdb"
    convert_mnist_data(images, labels, db, limit=N_RECORDS)

    train_test = (EXAMPLES / "lenet_train_test.prototxt").read_text()
    train_test = re.sub(r'source: "[^"]*"', f'source: "{db}"', train_test)
    train_test = re.sub(r"batch_size: \d+", "batch_size: 4", train_test)
    (root / "lenet_train_test.prototxt").write_text(train_test)
    deploy = (EXAMPLES / "lenet.prototxt").read_text().replace("dim: 64", "dim: 2")
    (root / "lenet.prototxt").write_text(deploy)
    solver = (EXAMPLES / "lenet_solver.prototxt").read_text()
    solver = solver.replace('"examples/mnist/lenet_train_test.prototxt"', f'"{root / "lenet_train_test.prototxt"}"')
    solver = solver.replace('"examples/mnist/lenet"', f'"{root / "snap" / "lenet"}"')
    solver = solver.replace("test_iter: 100", "test_iter: 2")
    (root / "lenet_solver.prototxt").write_text(solver)
    (root / "snap").mkdir()

    net = Net(root / "lenet.prototxt", TEST)
    net.save(root / "lenet.caffemodel")
    solver_obj = get_solver(root / "lenet_solver.prototxt")
    solver_obj.step(1)
    solver_obj.snapshot()  # snap/lenet_iter_1.caffemodel and .solverstate

    digits = read_images(images)[:N_RECORDS].astype(np.float32)
    mean = Blob(1, 1, 28, 28)
    mean.data[...] = digits.mean(axis=0)
    protoio.write_binary(root / "mean.binaryproto", mean.to_proto())

    write_idx(root / "images-idx3-ubyte", read_images(images)[:16])
    write_idx(root / "labels-idx1-ubyte", read_labels(labels)[:16])
    write_idx(root / "images-idx3-ubyte.gz", read_images(images)[:16])
    write_idx(root / "labels-idx1-ubyte.gz", read_labels(labels)[:16])
    return root


@pytest.fixture(scope="module")
def solver(work):
    """An SGD solver for LeNet, to restore damaged .solverstate files into."""
    return get_solver(work / "lenet_solver.prototxt")


@contextlib.contextmanager
def scratch(work: Path):
    """A fresh folder for one case, removed after it."""
    folder = Path(tempfile.mkdtemp(dir=work))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def damaged_copy(folder: Path, name: str, data) -> Path:
    """Write the damaged bytes or text into `folder` under the original's name."""
    path = folder / name
    if isinstance(data, str):
        path.write_text(data, errors="surrogateescape")
    else:
        path.write_bytes(data)
    return path


def forward_if_small(net: Net) -> None:
    """Run a forward pass when the blobs are small (a mutated size can ask for GBs).

    Forward errors name the layer (the net was built from the file already); mutated
    scales and fillers may overflow, which is arithmetic, not an error.
    """
    if sum(b.count for b in net.blobs.values()) <= 1 << 21:
        with np.errstate(all="ignore"):
            try:
                net.forward()
            except MinicaffeError:
                event("forward refused")


# ---------------------------------------------------------------- prototxt

@fuzz
@given(mutations=texts_mutations, name=st.sampled_from(["lenet.prototxt", "lenet_train_test.prototxt"]))
@example(mutations=[("number", 14, "999999999")], name="lenet.prototxt")  # ip1's num_output
@example(mutations=[("number", 0, "0")], name="lenet.prototxt")  # a batch of 0 images (forward)
@example(mutations=[("number", 0, "100000")], name="lenet.prototxt")  # 5 GiB of conv1 columns
@example(mutations=[("truncate", 392), ("del_line", 128)], name="lenet.prototxt")  # Input, no shape
@example(mutations=[("number", 89, "999999999")], name="lenet_train_test.prototxt")  # pool2's stride
def test_mutated_net_prototxt(work, mutations, name):
    with scratch(work) as folder:
        path = damaged_copy(folder, name, mutate_text((work / name).read_text(), mutations))

        def build():
            param = protoio.read_net_param(path)
            assert isinstance(param, caffe_pb2.NetParameter)
            for phase in (TRAIN, TEST):
                net = Net(path, phase)
                forward_if_small(net)
                for layer in net.data_layers():
                    layer.stop_prefetch()

        loads_or_names(path, build)


@fuzz
@given(mutations=texts_mutations)
def test_mutated_solver_prototxt(work, mutations):
    with scratch(work) as folder:
        path = damaged_copy(folder, "lenet_solver.prototxt",
                            mutate_text((work / "lenet_solver.prototxt").read_text(), mutations))

        def build():
            protoio.read_solver_param(path)
            solver = get_solver(path)
            for net in (solver.net, *solver.test_nets):
                for layer in net.data_layers():
                    layer.stop_prefetch()

        # An error in the net the solver names names that file, and the solver file too
        # unless the path itself was damaged.
        loads_or_names(path, build, also=[work / "lenet_train_test.prototxt"])


# ---------------------------------------------------------------- binary protobuf

@fuzz
@given(mutations=bytes_mutations, how=st.sampled_from(["copy", "weights", "model"]))
def test_damaged_caffemodel(work, mutations, how):
    """Weights copied into a net, given to its constructor, or the file as the model itself."""
    original = (work / "lenet.caffemodel").read_bytes()
    structure = wire_offsets(original, caffe_pb2.NetParameter.DESCRIPTOR)
    with scratch(work) as folder:
        path = damaged_copy(folder, "lenet.caffemodel", mutate_bytes(original, mutations, structure))
        if how == "copy":
            net = Net(work / "lenet.prototxt", TEST)
            loads_or_names(path, lambda: net.copy_trained_layers_from(path))
        elif how == "weights":
            loads_or_names(path, lambda: Net(work / "lenet.prototxt", TEST, weights=path))
        else:
            loads_or_names(path, lambda: forward_if_small(Net(path, TEST)))


@fuzz
@given(mutations=bytes_mutations)
@example(mutations=[("insert", ("anywhere", 4), b"\x00\x80")])  # learned_net no longer UTF-8
@example(mutations=[("flip", ("structure", 3), 1)])  # learned_net names a missing file
def test_damaged_solverstate(work, solver, mutations):
    original = (work / "snap" / "lenet_iter_1.solverstate").read_bytes()
    structure = wire_offsets(original, caffe_pb2.SolverState.DESCRIPTOR)
    with scratch(work) as folder:
        path = damaged_copy(folder, "lenet_iter_1.solverstate", mutate_bytes(original, mutations, structure))

        def restore():
            try:
                solver.restore(path)
            finally:
                for layer in solver.net.data_layers():
                    layer.stop_prefetch()

        loads_or_names(path, restore)


@fuzz
@given(mutations=bytes_mutations)
def test_damaged_mean_file(work, mutations):
    original = (work / "mean.binaryproto").read_bytes()
    structure = wire_offsets(original, caffe_pb2.BlobProto.DESCRIPTOR)
    with scratch(work) as folder:
        path = damaged_copy(folder, "mean.binaryproto", mutate_bytes(original, mutations, structure))
        param = caffe_pb2.TransformationParameter(mean_file=str(path), scale=0.00390625)

        def transform():
            transformer = DataTransformer(param, TRAIN, owner="Data layer 'mnist'")
            with np.errstate(all="ignore"):  # a flipped exponent bit makes a huge mean value
                out = transformer.transform(np.zeros((2, 1, 28, 28), np.uint8))
            assert out.shape == (2, 1, 28, 28)

        loads_or_names(path, transform)


# ---------------------------------------------------------------- IDX

IDX_TYPES = st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0x07, 0xFF])
IDX_DIMS = st.one_of(st.sampled_from([0, 0, 1, 3, 16, 28, 2**31, 2**32 - 1]), st.integers(0, 2**32 - 1))


@st.composite
def idx_headers(draw):
    """A forged header: type code, dimension count, then (usually) as many dimensions."""
    ndim = draw(st.one_of(st.integers(0, 4), st.sampled_from([32, 64, 65, 255]), st.integers(0, 255)))
    count = draw(st.one_of(st.just(ndim), st.integers(0, min(ndim + 1, 300))))
    dims = draw(st.lists(IDX_DIMS, min_size=count, max_size=count))
    return bytes([0, 0, draw(IDX_TYPES), ndim]) + b"".join(d.to_bytes(4, "big") for d in dims)


IDX_PAIRS = {"images-idx3-ubyte": "labels-idx1-ubyte", "labels-idx1-ubyte": "images-idx3-ubyte",
             "images-idx3-ubyte.gz": "labels-idx1-ubyte.gz", "labels-idx1-ubyte.gz": "images-idx3-ubyte.gz"}


@fuzz
@given(file=st.sampled_from(sorted(IDX_PAIRS)), mutations=bytes_mutations,
       header=st.none() | idx_headers(), payload=st.integers(0, 20000))
@example(file="images-idx3-ubyte", mutations=[], payload=0,
         header=bytes([0, 0, 8, 65]) + bytes(4 * 65))  # 65 empty dimensions: more than numpy has
@example(file="images-idx3-ubyte", mutations=[], payload=0,
         header=bytes([0, 0, 8, 3]) + b"\xff" * 8 + bytes(4))  # empty, yet 2**64 elements a plane
def test_damaged_idx(work, file, mutations, header, payload):
    """Damage bytes anywhere (mostly the 16-byte header), or forge a header over the data;
    then read it every way minicaffe does, down to converting the pair to an LMDB."""
    original = (work / file).read_bytes()
    if header is not None:  # a forged header in front of `payload` bytes of the real data
        raw = header + (gzip.decompress(original) if file.endswith(".gz") else original)[16:16 + payload]
        data = gzip.compress(raw) if file.endswith(".gz") else raw
    else:
        data = mutate_bytes(original, mutations, structure=list(range(16)))
    with scratch(work) as folder:
        path = damaged_copy(folder, file, data)
        pair = work / IDX_PAIRS[file]
        images, labels = (path, pair) if file.startswith("images") else (pair, path)

        def read():
            assert isinstance(read_idx(path), np.ndarray)
            idx_magic(path)
            (read_images if file.startswith("images") else read_labels)(path)
            convert_mnist_data(images, labels, folder / "db", progress=False)

        loads_or_names(path, read)


# ---------------------------------------------------------------- LMDB records

INT32 = st.one_of(st.sampled_from([-1, 0, 1, 3, 28, 56, 784, 2**31 - 1, -2**31, 2**16]),
                  st.integers(-2**31, 2**31 - 1))
IMAGE_PREFIXES = st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM",
                                  b"P5\n28 28\n255\n", b"P5\n99999 99999\n255\n", b"II*\x00"])


@st.composite
def damages(draw):
    """One way to damage a serialized Datum (the record of an MNIST digit)."""
    kind = draw(st.sampled_from(["bytes", "mutate", "shape", "float_data", "encoded", "png", "label"]))
    if kind == "bytes":
        return kind, draw(st.binary(max_size=64))
    if kind in ("mutate", "png"):
        return kind, draw(bytes_mutations)
    if kind == "shape":
        return kind, (draw(INT32), draw(INT32), draw(INT32))
    if kind == "float_data":
        return kind, (draw(st.integers(0, 1600)), draw(st.booleans()))
    if kind == "encoded":
        return kind, draw(IMAGE_PREFIXES) + draw(st.binary(max_size=64))
    return kind, draw(INT32)


def damage_datum(value: bytes, damage) -> bytes:
    kind, arg = damage
    if kind == "bytes":  # random bytes instead of a Datum
        return arg
    if kind == "mutate":  # the serialized Datum truncated, bit-flipped, ...
        return mutate_bytes(value, arg, wire_offsets(value, caffe_pb2.Datum.DESCRIPTOR))
    datum = caffe_pb2.Datum.FromString(value)
    if kind == "shape":  # channels x height x width that contradict the 784 pixel bytes
        datum.channels, datum.height, datum.width = arg
    elif kind == "float_data":  # float_data, maybe of the wrong size, maybe beside the pixels
        size, keep_pixels = arg
        if not keep_pixels:
            datum.ClearField("data")
        datum.float_data.extend(np.linspace(0, 1, size).tolist())
    elif kind == "encoded":  # encoded=True, and garbage behind an image format's magic
        datum.encoded, datum.data = True, arg
    elif kind == "png":  # a real PNG of the digit, damaged
        buffer = io.BytesIO()
        Image.fromarray(np.frombuffer(datum.data, np.uint8).reshape(28, 28)).save(buffer, "PNG")
        datum.encoded, datum.data = True, mutate_bytes(buffer.getvalue(), arg)
    elif kind == "label":  # a valid Datum whose label the loss layer refuses
        datum.label = arg
    return datum.SerializeToString()


def prefetch_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("prefetch ") and t.is_alive()}


def read_three_batches(work: Path, db: Path, through: str, batch_size: int, prefetch: int):
    """Check the property on 3 forwards (which cover the 8 records) of a Data layer alone,
    or of LeNet, reading `db`; stop the threads; return the type of the error's cause.

    A damaged label is a valid Datum that the loss layer refuses, naming itself.
    """
    layers = []

    def read():
        if through == "layer":
            param = layer_param("Data", name="mnist", transform_param={"scale": 0.00390625},
                                data_param={"source": str(db), "batch_size": batch_size,
                                            "backend": "LMDB", "prefetch": prefetch})
            layer = create_layer(param)
            layers.append(layer)
            top = [Blob(), Blob()]
            layer.setup([], top)
            forward = lambda: layer.forward([], top)  # noqa: E731
        else:
            text = (work / "lenet_train_test.prototxt").read_text()
            text = text.replace(str(work / "mnist_lmdb"), str(db))
            text = text.replace("batch_size: 4", f"batch_size: {batch_size} prefetch: {prefetch}")
            net = Net(damaged_copy(db.parent, "net.prototxt", text), TRAIN)
            layers.extend(net.data_layers())
            forward = net.forward_loss
        with np.errstate(all="ignore"):
            for _ in range(3):
                forward()

    try:
        err = loads_or_names(db, read, also=["SoftmaxWithLoss layer 'loss': label"])
    finally:
        for layer in layers:
            layer.stop_prefetch()
    return None if err is None or err.__cause__ is None else type(err.__cause__)


@fuzz
@given(damaged=st.dictionaries(st.integers(0, N_RECORDS - 1), damages(), min_size=1, max_size=3),
       prefetch=st.sampled_from([0, 1, 3]), batch_size=st.sampled_from([3, 4, 8]),
       through=st.sampled_from(["layer", "net"]))
@example(damaged={0: ("shape", (-1, -1, 784))}, prefetch=0, batch_size=4, through="layer")
@example(damaged={3: ("encoded", b"P5\n99999 99999\n255\n")}, prefetch=1, batch_size=4, through="layer")
@example(damaged={0: ("bytes", b"")}, prefetch=1, batch_size=4, through="layer")  # setup fails
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")  # Pillow, on garbage
def test_damaged_lmdb_records(work, damaged, prefetch, batch_size, through):
    """Errors name the database; an error in the prefetch thread is a MinicaffeError itself
    (forward raises it with context); no thread or database handle outlives the layer."""
    with LMDBReader(work / "mnist_lmdb") as reader:  # the nets may hold it open already
        records = dict(reader.read_many(range(len(reader))))
    keys = sorted(records)
    for k, damage in damaged.items():
        records[keys[k]] = damage_datum(records[keys[k]], damage)
    threads_before = prefetch_threads()
    with scratch(work) as folder:
        db = folder / "damaged_lmdb"
        with lmdb.open(str(db), map_size=1 << 24) as env, env.begin(write=True) as txn:
            for key, value in records.items():
                txn.put(key, value)
        cause = read_three_batches(work, db, through, batch_size, prefetch)
        assert cause is None or issubclass(cause, MinicaffeError), \
            f"the reading thread failed with {cause.__name__}, not a MinicaffeError"
        assert prefetch_threads() <= threads_before, "a prefetch thread outlived its layer"
        gc.collect()  # the layers are garbage now (cycles through tracebacks need the collector)
        assert not any(Path(entry[0].path()) == db for entry in db_module._SHARED.values()), \
            "a dropped Data layer kept its LMDB open"


# ---------------------------------------------------------------- the command line

def cli_error_lines(capsys, argv) -> tuple[int, list[str]]:
    """The exit code and what stderr holds besides glog lines."""
    code = cli.main(argv)
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip() and not GLOG.match(line)]


@pytest.mark.parametrize("what", ["caffemodel", "solverstate", "solver", "net", "idx"])
def test_cli_reports_a_damaged_file_in_one_line(work, capsys, what):
    """`minicaffe` on a damaged file: exit 1 and one line, `minicaffe: error: <file>: ...`."""
    with scratch(work) as folder:
        if what == "caffemodel":  # cut inside the first layers' weights
            caffemodel = (work / "lenet.caffemodel").read_bytes()
            path = damaged_copy(folder, "lenet.caffemodel", caffemodel[:len(caffemodel) // 3])
            argv = ["test", "--model", str(work / "lenet.prototxt"), "--weights", str(path),
                    "--iterations", "1"]
        elif what == "solverstate":  # cut inside the history blobs
            state = (work / "snap" / "lenet_iter_1.solverstate").read_bytes()
            path = damaged_copy(folder, "lenet_iter_1.solverstate", state[:len(state) // 2])
            argv = ["train", "--solver", str(work / "lenet_solver.prototxt"), "--snapshot", str(path)]
        elif what == "solver":  # a stray brace
            path = damaged_copy(folder, "solver.prototxt", (work / "lenet_solver.prototxt").read_text()
                                .replace("momentum: 0.9", "momentum: 0.9}"))
            argv = ["train", "--solver", str(path)]
        elif what == "net":  # a typo'd num_output: ~800 GB of weights
            path = damaged_copy(folder, "lenet.prototxt", (work / "lenet.prototxt").read_text()
                                .replace("num_output: 500", "num_output: 999999999"))
            argv = ["time", "--model", str(path), "--iterations", "1"]
        else:  # the last 5 pixels missing
            path = damaged_copy(folder, "images-idx3-ubyte", (work / "images-idx3-ubyte").read_bytes()[:-5])
            argv = ["convert_mnist_data", str(path), str(work / "labels-idx1-ubyte"), str(folder / "db")]
        code, lines = cli_error_lines(capsys, argv)
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith("minicaffe: error: ") and str(path) in lines[0], lines


@settings(fuzz, suppress_health_check=[HealthCheck.function_scoped_fixture])  # capsys: read per case
@given(mutations=bytes_mutations)
def test_cli_on_a_damaged_caffemodel_succeeds_or_prints_one_line(work, capsys, mutations):
    original = (work / "lenet.caffemodel").read_bytes()
    structure = wire_offsets(original, caffe_pb2.NetParameter.DESCRIPTOR)
    with scratch(work) as folder, guarded():
        path = damaged_copy(folder, "lenet.caffemodel", mutate_bytes(original, mutations, structure))
        code, lines = cli_error_lines(capsys, ["test", "--model", str(work / "lenet.prototxt"),
                                               "--weights", str(path), "--iterations", "1"])
    assert code in (0, 1)
    if code == 1:
        assert len(lines) == 1 and lines[0].startswith("minicaffe: error: ") and str(path) in lines[0], lines
    else:
        assert not lines, lines
