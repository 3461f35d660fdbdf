"""The lessons' checks (lessons/NN_topic/test_check.py) tell right from wrong.

For every lesson:
(a) against the reference solutions (lessons/solutions/), every check passes;
(b) against each deliberately wrong solution (lessons/wrong/NN_topic_<bug>.py, one
    subtle bug each), some check of its lesson fails;
(c) against the untouched starters (exercise.py), every check fails, and with the
    starter's NotImplementedError("TODO: ...") rather than some other crash.

Each target runs in its own `python -m pytest` subprocess, selected with
MINICAFFE_LESSON_TARGET, so that modules loaded for one target never leak into another.
Results are read from a JUnit XML report.
"""
import ast
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"
LESSON_DIRS = sorted(p for p in LESSONS.glob("[0-9][0-9]_*") if p.is_dir())
WRONG = sorted((LESSONS / "wrong").glob("[0-9][0-9]_*.py"))
NAMES = [p.name for p in LESSON_DIRS]


def lesson_params(names):
    """Lesson 09 writes an OpenCL kernel: its cases carry the `opencl` marker."""
    return [pytest.param(n, marks=pytest.mark.opencl) if lesson_needs_device(n) else n for n in names]


def lesson_needs_device(name: str) -> bool:
    return name.startswith("09_")


def lesson_of(wrong: Path) -> str:
    matches = [name for name in NAMES if wrong.stem.startswith(name + "_")]
    assert len(matches) == 1, f"{wrong.name} should be named <lesson folder>_<bug>.py"
    return matches[0]


def run_checks(folders: list[str], target: str, report: Path) -> dict[str, list[tuple[str, str, str]]]:
    """Run the checks of `folders` against `target`; per lesson, (test, outcome, message)."""
    env = dict(os.environ, MINICAFFE_LESSON_TARGET=target, OPENBLAS_NUM_THREADS="1")
    env.pop("PYTEST_ADDOPTS", None)
    command = [sys.executable, "-m", "pytest", *[f"lessons/{f}" for f in folders], "-q",
               "-p", "no:cacheprovider", f"--junitxml={report}"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert report.exists(), f"pytest did not run:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    results: dict[str, list[tuple[str, str, str]]] = {}
    for case in ElementTree.parse(report).iter("testcase"):
        lesson = next((n for n in NAMES if n in case.get("classname", "")), "?")
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            element = case.find(kind)
            if element is not None:
                outcome, message = kind, (element.get("message") or "") + "\n" + (element.text or "")
                break
        results.setdefault(lesson, []).append((case.get("name"), outcome, message))
    results["_output"] = [("", "", done.stdout[-4000:] + done.stderr[-2000:])]
    return results


@pytest.fixture(scope="module")
def solutions(tmp_path_factory):
    return run_checks(NAMES, "solutions", tmp_path_factory.mktemp("solutions") / "report.xml")


@pytest.fixture(scope="module")
def starters(tmp_path_factory):
    return run_checks(NAMES, "exercise", tmp_path_factory.mktemp("starters") / "report.xml")


def test_every_lesson_is_complete():
    assert len(LESSON_DIRS) >= 10
    for folder in LESSON_DIRS:
        number = folder.name[:2]
        for name in ("README.md", "exercise.py", "test_check.py"):
            assert (folder / name).is_file(), f"{folder.name} has no {name}"
        solution = LESSONS / "solutions" / f"{folder.name}.py"
        assert solution.is_file(), f"no solution {solution.relative_to(ROOT)}"
        assert any(lesson_of(w) == folder.name for w in WRONG), f"no wrong solution for {folder.name}"
        assert f"pytest.mark.lesson{number}" in (folder / "test_check.py").read_text()

        def functions(path):
            return {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}
        exercise = (folder / "exercise.py").read_text()
        assert "NotImplementedError(\"TODO" in exercise
        assert functions(solution) <= functions(folder / "exercise.py"), \
            f"{folder.name}: the solution defines functions the exercise does not"


@pytest.mark.parametrize("lesson", lesson_params(NAMES))
def test_solutions_pass(solutions, lesson):
    results = solutions.get(lesson, [])
    assert results, f"no checks ran for {lesson}:\n{solutions['_output'][0][2]}"
    bad = [(name, outcome, message[:500]) for name, outcome, message in results if outcome != "passed"]
    assert not bad, f"{lesson}: the reference solution fails its checks: {bad}"


@pytest.mark.parametrize("lesson", lesson_params(NAMES))
def test_starters_fail_with_todo(starters, lesson):
    results = starters.get(lesson, [])
    assert results, f"no checks ran for {lesson}:\n{starters['_output'][0][2]}"
    for name, outcome, message in results:
        assert outcome in ("failure", "error"), f"{lesson}::{name} {outcome} against the starter"
        assert "NotImplementedError" in message and "TODO" in message, \
            f"{lesson}::{name} failed, but not with the starter's TODO:\n{message[:1500]}"


@pytest.mark.parametrize("wrong", [pytest.param(w, marks=pytest.mark.opencl) if lesson_needs_device(lesson_of(w))
                                   else w for w in WRONG], ids=[w.stem for w in WRONG])
def test_wrong_solutions_fail(wrong, tmp_path):
    lesson = lesson_of(wrong)
    results = run_checks([lesson], str(wrong.relative_to(ROOT)), tmp_path / "report.xml")
    outcomes = [outcome for _, outcome, _ in results.get(lesson, [])]
    assert outcomes, f"no checks ran for {wrong.name}:\n{results['_output'][0][2]}"
    assert "failure" in outcomes, f"the checks of {lesson} do not catch the bug in {wrong.name}"
    for name, outcome, message in results[lesson]:
        assert "NotImplementedError" not in message, f"{wrong.name}: {name}: {message[:500]}"
