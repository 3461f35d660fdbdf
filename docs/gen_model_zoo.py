"""The model-zoo page's table and drawings, made from the net definitions at build time.

For each net of `minicaffe.testing.zoo.ZOO`, at batch 1 in the TEST phase:

* parameters, multiply-adds and memory come from `minicaffe summary`'s code
  (`minicaffe.tools.summary.summarize`), run on the definition as the docs are built;
* the forward time is read from `docs/model_zoo_timings.json`, which
  `benchmarks/zoo_table.py` wrote on a real machine (measuring here would make every
  docs build take minutes, and CI's numbers would mean little);
* the drawing is `minicaffe.draw`'s SVG, made by Graphviz's `dot` as the site is built.

Caffe's definitions live beside the repository (`../shared/caffe_models`), not in it: a
build without them, or without Graphviz, says so on the page instead of failing.
`python docs/gen_model_zoo.py` prints the page's generated Markdown.
"""
from __future__ import annotations

import functools
import json
import logging
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from minicaffe.testing.zoo import CAFFE_MODELS, ZOO, ZooNet, zoo_net  # noqa: E402

TIMINGS = ROOT / "docs" / "model_zoo_timings.json"
GEMM_TYPES = ("Convolution", "Deconvolution", "InnerProduct")
BYTES_PER_VALUE = 4  # float32

# Where each folder of definitions comes from, for the page's links.
UPSTREAM = [
    ("models/resnet/", "https://github.com/KaimingHe/deep-residual-networks/tree/master/prototxt"),
    ("models/squeezenet_v1.0/", "https://github.com/forresti/SqueezeNet/blob/master/SqueezeNet_v1.0/"),
    ("models/squeezenet_v1.1/", "https://github.com/forresti/SqueezeNet/blob/master/SqueezeNet_v1.1/"),
    ("", "https://github.com/BVLC/caffe/blob/master/"),
]


def source_url(net: ZooNet) -> str:
    for prefix, url in UPSTREAM:
        if net.path.startswith(prefix):
            return url if url.endswith("prototxt") else url + net.path[len(prefix):]
    raise AssertionError(net.path)


def drawing_path(net: ZooNet) -> str:
    """Where the net's drawing lives in the site (relative to docs/)."""
    return f"assets/generated/zoo/{net.key}.svg"


def models_available(models: Path = CAFFE_MODELS) -> bool:
    return Path(models).is_dir()


def can_draw(models: Path = CAFFE_MODELS) -> bool:
    return models_available(models) and shutil.which("dot") is not None


# ---------------------------------------------------------------- the numbers

@functools.cache
def row(net: ZooNet, models: Path = CAFFE_MODELS) -> dict:
    """The figures of one net at batch 1, TEST phase, from `summarize`'s table: its
    layers, input shapes, parameters, multiply-adds (of its GEMM layers) and bytes."""
    from minicaffe.tools.summary import summarize
    # Building a net logs every layer; the docs build's log needs none of it.
    quiet = logging.getLogger("minicaffe")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        summary = summarize(zoo_net(net, models), "TEST")
    finally:
        quiet.setLevel(level)
    rows = summary["rows"]
    # summarize counts 2 FLOPs (a multiply and an add) per multiply-add, biases left out.
    macs = sum(r["flops"] for r in rows if r["type"] in GEMM_TYPES) // 2
    params, activations = summary["totals"]["params"], summary["totals"]["activation_bytes"]
    inputs = [r["top_shapes"] for r in rows if r["type"] == "Input"]
    # The layers of the definition: not the Splits that building a net inserts.
    layers = sum(r["type"] != "Split" for r in rows)
    return {"layers": layers, "inputs": [s for shapes in inputs for s in shapes],
            "params": params, "macs": macs, "activation_bytes": activations,
            "memory_bytes": activations + BYTES_PER_VALUE * params}


def timings(path: Path = TIMINGS) -> dict:
    """The measured data file, or an empty record when there is none."""
    return json.loads(path.read_text()) if path.exists() else {"nets": {}}


# ---------------------------------------------------------------- formatting

def _count(n: int) -> str:
    """1,234 below a million; 1.23 M; 4.56 G."""
    if n < 1e6:
        return f"{n:,}"
    return f"{n / 1e6:.2f} M" if n < 1e9 else f"{n / 1e9:.2f} G"


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def _ms(ms: float) -> str:
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 100 else f"{ms:,.0f}"


def _shape(shapes) -> str:
    return ", ".join("×".join(map(str, s)) for s in shapes)


def machine_line(record: dict) -> str:
    m = record.get("machine")
    if not m:
        return ("No measurements are recorded yet: run `python benchmarks/zoo_table.py` "
                "to write `docs/model_zoo_timings.json`.")
    return (f"Forward times measured on {record['date']} by `{record['command']}`: "
            f"{m['cpu']}, {m['cores']} cores, {m['system']}; Python {m['python']}, "
            f"numpy {m['numpy']} with {m['blas']} (BLAS threads: {m['blas_threads']}). "
            f"Each is the least time of a net's runs of `net.forward()`: {record['rounds']} rounds "
            f"of at least {record['min_repeats']} runs, {record['min_seconds']:g} s in all, the nets "
            f"taking turns, after one untimed pass; a round during which other processes kept more "
            f"than {record['max_others']:g} cores busy was run again.")


def table(models: Path = CAFFE_MODELS, timing_file: Path = TIMINGS) -> str:
    """The page's table, in Markdown, with the measurement note under it."""
    record = timings(timing_file)
    if not models_available(models):
        return (f'!!! note "No table"\n    Caffe\'s model definitions were not at `{models}` when '
                "this site was built; the table is computed from them.")
    lines = ["| Net | Input | Layers | Parameters | Multiply-adds | Activations | Memory "
             "| Forward (ms) |",
             "|:--|:--|--:|--:|--:|--:|--:|--:|"]
    for net in ZOO:
        r = row(net, models)
        measured = record["nets"].get(net.key)
        ms = _ms(measured["forward_ms_min"]) if measured else "not measured"
        if measured and measured.get("noisy_rounds"):
            ms += " †"
        lines.append(f"| [{net.title}](#{net.key}) | {_shape(r['inputs'])} | {r['layers']} "
                     f"| {_count(r['params'])} | {_count(r['macs'])} | {_mib(r['activation_bytes'])} "
                     f"| {_mib(r['memory_bytes'])} | {ms} |")
    note = machine_line(record)
    if any(m.get("noisy_rounds") for m in record["nets"].values()):
        note += (" † Some rounds of the nets so marked stayed disturbed by other processes after "
                 "every retry: their times may be too long.")
    return "\n".join(lines) + "\n\n" + note


def drawings(models: Path = CAFFE_MODELS) -> str:
    """One section per net: where its definition comes from, and its drawing."""
    parts = []
    for net in ZOO:
        part = (f"### {net.title} {{ #{net.key} }}\n\n"
                f"[`{net.path}`]({source_url(net)})")
        if net.data_shape is not None:
            part += (f" (its Data layers replaced by an Input of shape "
                     f"{'×'.join(map(str, net.data_shape))})")
        if can_draw(models):
            part += (f'\n\n??? example "Drawing: `minicaffe draw --rankdir TB --phase TEST`"\n\n'
                     f"    [![{net.title}, drawn by minicaffe.draw]({drawing_path(net)}){{ loading=lazy }}]"
                     f"({drawing_path(net)})")
        parts.append(part)
    if not can_draw(models):
        parts.insert(0, '!!! note "No drawings"\n    Graphviz\'s `dot` (or Caffe\'s definitions) '
                        "was not there when this site was built; `minicaffe draw MODEL net.svg` "
                        "draws any of these nets where it is.")
    return "\n\n".join(parts)


def drawing_svg(net: ZooNet, models: Path = CAFFE_MODELS) -> bytes:
    """The net as the table sees it (batch 1, TEST phase), drawn top to bottom."""
    from minicaffe import draw
    from minicaffe.proto import caffe_pb2
    return draw.draw_net(zoo_net(net, models), "TB", ext="svg", phase=caffe_pb2.TEST)


def figures(models: Path = CAFFE_MODELS) -> dict[str, bytes]:
    """{site path: SVG} of every drawing the page shows ({} where it shows none)."""
    return {drawing_path(net): drawing_svg(net, models) for net in ZOO} if can_draw(models) else {}


if __name__ == "__main__":
    print(table(), "\n", drawings(), sep="\n")
