"""MkDocs hooks: the parts of the site that are generated from the code at build time.

* every registered layer type gets a page (`gen_layer_pages.py`), listed under "Layers"
  by family (Data, Vision, ..., Loss);
* every lesson in `lessons/` gets a page (its README, then its exercise), under "Lessons";
* figures: the learning-rate policies plotted with `minicaffe.solver.learning_rate`,
  LeNet drawn by `minicaffe draw`, the LeNet training curves by `minicaffe plot`
  (from the committed log `docs/assets/lenet_train.log`), and data-parallel training's
  speed on 1 and 2 ranks (from `docs/parallel_figures.json`, written by
  `benchmarks/parallel.py`);
* directives in hand-written pages, replaced by text read from the code:
  `<!-- docstring: minicaffe.syncedmem -->` (a module's docstring) and
  `<!-- summary: examples/mnist/lenet.prototxt TEST -->` (`minicaffe summary`'s table),
  `<!-- drawings -->` (LeNet's TRAIN and TEST nets side by side),
  `<!-- source: minicaffe/layers/tanh.py -->` (a whole file, as a code block),
  `<!-- model-zoo: table -->` and `<!-- model-zoo: drawings -->` (the model-zoo page's
  figures, from `gen_model_zoo.py`: computed from Caffe's definitions, the times read
  from `docs/model_zoo_timings.json`, and each net drawn by `minicaffe.draw`).
"""
from __future__ import annotations

import importlib
import io
import logging
import re
import shutil
import sys
from pathlib import Path

from mkdocs.structure.files import File

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
for path in (str(ROOT), str(DOCS)):
    if path not in sys.path:
        sys.path.insert(0, path)

import gen_layer_pages  # noqa: E402
import gen_model_zoo  # noqa: E402

log = logging.getLogger("mkdocs.hooks.minicaffe")

# The settings each lr_policy curve is drawn with (LeNet's base_lr; inv is LeNet's policy).
LR_EXAMPLES = [
    ("fixed", {}),
    ("step", {"gamma": 0.1, "stepsize": 2500}),
    ("exp", {"gamma": 0.9997}),
    ("inv", {"gamma": 1e-4, "power": 0.75}),
    ("multistep", {"gamma": 0.5, "stepvalue": [2000, 5000, 8000]}),
    ("poly", {"power": 2.0}),
    ("sigmoid", {"gamma": 0.002, "stepsize": 5000}),
]
MAX_ITER = 10000


# ---------------------------------------------------------------- figures

def lr_policies_svg() -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minicaffe.proto import caffe_pb2
    from minicaffe.solver import learning_rate

    fig, axes = plt.subplots(2, 4, figsize=(12, 6), sharex=True)
    for ax, (policy, fields) in zip(axes.flat, LR_EXAMPLES):
        param = caffe_pb2.SolverParameter(lr_policy=policy, base_lr=0.01, max_iter=MAX_ITER, **fields)
        rates, step = [], 0
        for it in range(MAX_ITER + 1):  # in order, once per iteration, as the solver asks
            rate, step = learning_rate(param, it, step)
            rates.append(rate)
        ax.plot(range(MAX_ITER + 1), rates, color="C0")
        settings = ", ".join(f"{k}: {v}" for k, v in fields.items()) or "base_lr only"
        ax.set_title(f"{policy}\n{settings}", fontsize=9)
        ax.set_ylim(0, 0.0105)
        ax.grid(True, alpha=0.3)
    axes.flat[-1].axis("off")
    for ax in axes[1]:
        ax.set_xlabel("iteration")
    for ax in axes[:, 0]:
        ax.set_ylabel("learning rate")
    fig.suptitle(f"lr_policy curves from minicaffe.solver.learning_rate (base_lr = 0.01, max_iter = {MAX_ITER})")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    return buffer.getvalue()


def lenet_svg(phase: str) -> bytes | None:
    """LeNet drawn by `minicaffe draw` (None when Graphviz's `dot` is not installed)."""
    if shutil.which("dot") is None:
        return None
    from minicaffe import draw, protoio
    param = protoio.read_net_param(ROOT / "examples/mnist/lenet_train_test.prototxt")
    return draw.draw_net(param, "TB", ext="svg", phase=phase)


def training_png() -> bytes:
    from minicaffe.tools.plot import plot_log
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        out = plot_log(DOCS / "assets" / "lenet_train.log", Path(tmp) / "plot.png", ["loss", "accuracy"])
        return out.read_bytes()


def parallel_svg() -> bytes:
    """LeNet on 1 and 2 MPI ranks, and the Allreduce each iteration, from the benchmark's json."""
    import json

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = json.loads((DOCS / "parallel_figures.json").read_text())
    runs = figures["runs"]
    fig, (speed, comm) = plt.subplots(1, 2, figsize=(10, 3.8))
    labels = [f"{r['ranks']} rank{'s' if r['ranks'] > 1 else ''}" for r in runs]
    images = [r["images_per_second"] for r in runs]
    bars = speed.bar(labels, images, color=["C0", "C1", "C2", "C3"][:len(runs)])
    for bar, run in zip(bars, runs):
        speed.annotate(f"{run['iterations_per_second']:.1f} iter/s\n{run['images_per_second']:.0f} img/s",
                       (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                       va="bottom", fontsize=9)
    speed.set_ylabel("training images per second")
    speed.set_ylim(0, max(images) * 1.3)
    speed.set_title(f"LeNet, batch {figures['batch_per_rank']} per rank", fontsize=10)
    multi = next(r for r in runs if r["ranks"] > 1)
    ways = [("one message\n(minicaffe)", multi["allreduce_s"]),
            (f"{multi['parameter_blobs']} messages\n(one per blob)", multi["allreduce_per_blob_s"]),
            ("one message\nfilled by copies", multi["allreduce_packed_with_copies_s"])]
    bars = comm.bar([w for w, _ in ways], [1e3 * t for _, t in ways], color="C1")
    for bar, (_, t) in zip(bars, ways):
        comm.annotate(f"{1e3 * t:.2f} ms", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                      ha="center", va="bottom", fontsize=9)
    comm.set_ylabel("ms per iteration")
    comm.set_ylim(0, 1e3 * max(t for _, t in ways) * 1.3)
    comm.set_title(f"Allreduce of {multi['parameters']:,} gradients, {multi['ranks']} ranks "
                   f"(training: {1e3 * multi['seconds_per_iteration']:.0f} ms/iter)", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    return buffer.getvalue()


# ---------------------------------------------------------------- lessons

LESSONS = ROOT / "lessons"


def lesson_folders() -> list[Path]:
    return sorted(LESSONS.glob("[0-9][0-9]_*/"))


def lesson_title(folder: Path) -> str:
    first = (folder / "README.md").read_text().splitlines()[0]
    return first.lstrip("# ").strip()


def lesson_pages() -> dict[str, str]:
    """lessons/README.md as the section's index, and one page per lesson: its README,
    then the starter code the learner completes (the source of truth stays in lessons/)."""
    index = (LESSONS / "README.md").read_text()
    pages = {"lessons/index.md": re.sub(r"\]\((\d\d_\w+)/\)", r"](\1.md)", index)}
    for folder in lesson_folders():
        exercise = (folder / "exercise.py").read_text()
        pages[f"lessons/{folder.name}.md"] = (
            (folder / "README.md").read_text().rstrip()
            + f"\n\n## The exercise\n\n`lessons/{folder.name}/exercise.py`: replace each TODO, then "
            f"run `python -m pytest lessons/{folder.name}`.\n\n```python\n{exercise}\n```\n")
    return pages


# ---------------------------------------------------------------- mkdocs events

def on_config(config):
    """List every generated layer page under the nav's "Layers" entry, by family."""
    from minicaffe.layer import layer_registry
    pages = [{"Overview": "layers/index.md"}] + [
        {gen_layer_pages.FAMILIES[family][0]: [{t: gen_layer_pages.page_path(t)} for t in types]}
        for family, types in gen_layer_pages.types_by_family(layer_registry()).items() if types]
    lessons = [{"The path": "lessons/index.md"}] + [
        {lesson_title(f): f"lessons/{f.name}.md"} for f in lesson_folders()]
    for i, item in enumerate(config.nav or []):
        if isinstance(item, dict) and item.get("Layers") == "layers/index.md":
            config.nav[i] = {"Layers": pages}
        if isinstance(item, dict) and item.get("Lessons") == "lessons/index.md":
            config.nav[i] = {"Lessons": lessons}
    return config


def on_files(files, config):
    for rel, text in {**gen_layer_pages.layer_pages(), **lesson_pages()}.items():
        files.append(File.generated(config, rel, content=text))
    files.append(File.generated(config, "assets/generated/lr_policies.svg", content=lr_policies_svg()))
    files.append(File.generated(config, "assets/generated/lenet_training.png", content=training_png()))
    files.append(File.generated(config, "assets/generated/parallel.svg", content=parallel_svg()))
    for phase in ("TRAIN", "TEST"):
        svg = lenet_svg(phase)
        if svg is None:
            log.info("Graphviz's dot is not installed: the LeNet drawing is left out")
            break
        files.append(File.generated(config, f"assets/generated/lenet_{phase.lower()}.svg", content=svg))
    zoo = gen_model_zoo.figures()
    if not zoo:
        log.info("Graphviz's dot or Caffe's model definitions are missing: the zoo drawings are left out")
    for rel, svg in zoo.items():
        files.append(File.generated(config, rel, content=svg))
    return files


_DOCSTRING = re.compile(r"<!--\s*docstring:\s*([\w.]+)\s*-->")
_SUMMARY = re.compile(r"<!--\s*summary:\s*(\S+)\s+(TRAIN|TEST)\s*-->")
_DRAWING = re.compile(r"<!--\s*drawings\s*-->")
_SOURCE = re.compile(r"<!--\s*source:\s*(\S+)\s*-->")
_ZOO = re.compile(r"<!--\s*model-zoo:\s*(table|drawings)\s*-->")
_LANGUAGES = {".py": "python", ".cl": "c", ".toml": "toml"}


def _source(match) -> str:
    """A file of the repository, whole, as a code block: the page shows the code as it is."""
    path = ROOT / match[1]
    return f"`{match[1]}`\n\n```{_LANGUAGES.get(path.suffix, 'text')}\n{path.read_text().rstrip()}\n```"


def _summary(match) -> str:
    from minicaffe.tools.summary import format_table, summarize
    table = format_table(summarize(ROOT / match[1], match[2]))
    return f"```text\n$ minicaffe summary --model {match[1]} --phase {match[2]}\n{table}\n```"


def _drawing(match) -> str:
    """LeNet's TRAIN and TEST nets, drawn top to bottom, side by side."""
    if shutil.which("dot") is None:
        return ('!!! note "No drawing"\n    Graphviz\'s `dot` was not installed when this site was '
                "built; run `minicaffe draw examples/mnist/lenet_train_test.prototxt lenet.svg` "
                "with Graphviz installed to see it.")
    cells = [f'<div markdown>\n\n**{phase}**\n\n![LeNet, {phase} phase, drawn by minicaffe draw]'
             f'(../assets/generated/lenet_{phase.lower()}.svg)\n\n</div>' for phase in ("TRAIN", "TEST")]
    return '<div class="code-pair net-drawings" markdown>\n\n' + "\n\n".join(cells) + "\n\n</div>"


def on_page_markdown(markdown, page, config, files):
    markdown = _DOCSTRING.sub(lambda m: importlib.import_module(m[1]).__doc__.strip(), markdown)
    markdown = _SUMMARY.sub(_summary, markdown)
    markdown = _SOURCE.sub(_source, markdown)
    markdown = _ZOO.sub(lambda m: getattr(gen_model_zoo, m[1])(), markdown)
    return _DRAWING.sub(_drawing, markdown)
