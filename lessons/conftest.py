"""Shared machinery of the lesson checks: which implementation a check tests.

Every lesson folder `NN_topic/` has a starter `exercise.py` (functions that raise
`NotImplementedError("TODO: ...")` until you write them) and a check `test_check.py`.
The check asks for the `lesson` fixture and calls the functions on it:

    def test_forward(lesson):
        y = lesson.inner_product_forward(x, w, b)

`lesson` is the module under test, loaded from its file:

* by default, the learner's `NN_topic/exercise.py`;
* with `MINICAFFE_LESSON_TARGET=solutions` (or `--lesson-target=solutions`), the reference
  `solutions/NN_topic.py`;
* with any other value, that file (e.g. `lessons/wrong/02_inner_product_transpose.py`),
  which is how tests/test_lessons.py makes sure every check catches a known bug.

Modules are loaded from their path, not imported by name (`02_inner_product` is no
Python identifier), and each check file has the same name, so pytest collects them in
its "importlib" mode, set here so that no configuration file needs to change.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

# The lessons use small matrices: threaded BLAS only adds overhead there, and on a busy
# machine it can make a product many times slower. Takes effect if numpy is not loaded yet.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402

LESSONS = Path(__file__).resolve().parent
TARGET_ENV = "MINICAFFE_LESSON_TARGET"


def lesson_dirs() -> list[Path]:
    return sorted(p for p in LESSONS.glob("[0-9][0-9]_*") if p.is_dir())


def pytest_addoption(parser):
    parser.addoption("--lesson-target", default=None,
                     help="what the lesson checks test: 'exercise' (default: your "
                          "exercise.py), 'solutions' (lessons/solutions/NN_topic.py) or a "
                          f"path to a .py file; overrides ${TARGET_ENV}")


def pytest_configure(config):
    # Every lesson's check is called test_check.py: import them by path, not by name.
    config.option.importmode = "importlib"
    for folder in lesson_dirs():
        number, _, topic = folder.name.partition("_")
        config.addinivalue_line("markers", f"lesson{number}: lesson {number}, {topic.replace('_', ' ')}")


def target(config) -> str:
    return config.getoption("--lesson-target") or os.environ.get(TARGET_ENV) or "exercise"


def pytest_report_header(config):
    return f"lesson target: {target(config)}"


def target_file(lesson_dir: Path, which: str) -> Path:
    """The file that holds the implementation under test for one lesson."""
    if which == "exercise":
        return lesson_dir / "exercise.py"
    if which == "solutions":
        return LESSONS / "solutions" / f"{lesson_dir.name}.py"
    path = Path(which)
    if not path.is_absolute() and not path.exists():
        path = LESSONS.parent / path  # relative to the repository root
    if not path.is_file():
        raise pytest.UsageError(f"lesson target {which!r}: no such file (give 'exercise', "
                                "'solutions' or the path of a .py file)")
    return path


def load(path: Path, name: str):
    """Run the module at `path` and return it, without putting it on sys.path."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lesson(request):
    """The implementation under test for the lesson whose check asks for it."""
    lesson_dir = Path(request.module.__file__).resolve().parent
    path = target_file(lesson_dir, target(request.config))
    return load(path, f"lesson_{lesson_dir.name}_{path.stem}")


@pytest.fixture(scope="module")
def lesson_dir(request) -> Path:
    """The folder of the lesson being checked (for its data files)."""
    return Path(request.module.__file__).resolve().parent
