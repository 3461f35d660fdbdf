"""What a machine without an OpenCL device gets: the numpy engine, device tests that skip
with one line saying how to get a device, and (under MINICAFFE_REQUIRE_DEVICE=1, as in CI)
a run that fails at once instead of skipping.

The suite itself runs in a subprocess with OCL_ICD_VENDORS pointed at an empty folder, so
the OpenCL loader finds no driver, whatever this machine has.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from minicaffe import opencl
from minicaffe.common import MinicaffeError

ROOT = Path(__file__).resolve().parents[1]


def test_no_platform_says_how_to_install(monkeypatch):
    import pyopencl
    monkeypatch.setattr(pyopencl, "get_platforms", lambda: [])
    with pytest.raises(MinicaffeError, match="pocl-opencl-icd") as error:
        opencl.devices()
    assert "pip install pocl-binary-distribution" in str(error.value)


def test_kernel_files_are_found():
    folder = opencl.kernel_dir()
    for name in ("common.cl", "math.cl", "gemm.cl", "im2col.cl"):
        assert (folder / name).is_file()


def run_suite_without_a_device(tmp_path, *tests, **env):
    empty = tmp_path / "no-vendors"
    empty.mkdir()
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("CI", "MINICAFFE_REQUIRE_DEVICE", "MINICAFFE_DEVICE")}
    environment.update(OCL_ICD_VENDORS=str(empty), HYPOTHESIS_PROFILE="ci", **env)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *tests],
                          cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)


def test_device_tests_skip_with_one_line_saying_how_to_get_a_device(tmp_path):
    # test_opencl.py needs a device throughout; test_relu.py runs once per engine.
    done = run_suite_without_a_device(tmp_path, "tests/test_opencl.py", "tests/layers/test_relu.py")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    final = done.stdout.strip().splitlines()[-1]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|skipped|failed)", final)}
    assert counts.get("failed", 0) == 0 and counts["passed"] > 0 and counts["skipped"] > 0, final
    lines = [line for line in done.stdout.splitlines() if "no OpenCL device works here" in line]
    assert len(lines) == 1, done.stdout[-3000:]
    assert f"minicaffe: {counts['skipped']} tests skipped" in lines[0]
    assert "pocl-opencl-icd" in lines[0]
    # The skips are not listed one by one: the summary line is the one thing to read.
    assert "SKIPPED [" not in done.stdout


def test_a_required_device_that_is_missing_fails_the_run(tmp_path):
    done = run_suite_without_a_device(tmp_path, "tests/layers/test_relu.py", MINICAFFE_REQUIRE_DEVICE="1")
    assert done.returncode != 0
    assert "MINICAFFE_REQUIRE_DEVICE=1 but no OpenCL device works" in done.stdout + done.stderr
    assert " passed" not in done.stdout  # stopped before any test ran
