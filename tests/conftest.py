"""Shared test setup: hypothesis profiles, the per-engine `mode` fixture, and the one rule
for tests that need an OpenCL device.

Profiles: `ci` (fast, the default under CI=true), `dev` (thorough, the default
otherwise). Pick one with HYPOTHESIS_PROFILE=ci|dev.

Device tests carry the `opencl` marker (the `mode` fixture's gpu half carries it too).
Without a working device they skip, and the run ends with one line saying how many did
and how to get a device. Under MINICAFFE_REQUIRE_DEVICE=1 (CI sets it) a missing device
stops the run before any test, so the OpenCL half can never be dropped silently there.
"""
import functools
import os

import pytest
from hypothesis import HealthCheck, settings

from minicaffe import common

# `gpu_only` (function-scoped) only sets the mode: it is safe to share across examples.
settings.register_profile("ci", max_examples=8, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                 HealthCheck.function_scoped_fixture])
settings.register_profile("dev", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

NO_DEVICE = "needs an OpenCL device"
HOW_TO_GET_ONE = ("to run them, install an OpenCL driver, e.g. PoCL, which runs OpenCL on the CPU: "
                  "`sudo apt-get install pocl-opencl-icd` (README: 'An OpenCL device')")


@functools.cache
def device_problem() -> str:
    """Why no OpenCL device works here ("" when one does), probed once per run."""
    from minicaffe.engine import opencl_problem
    try:
        return opencl_problem()
    except common.MinicaffeError as error:  # e.g. MINICAFFE_DEVICE names no device
        return str(error)


def pytest_configure(config):
    if os.environ.get("MINICAFFE_REQUIRE_DEVICE") == "1" and device_problem():
        raise pytest.UsageError(f"MINICAFFE_REQUIRE_DEVICE=1 but no OpenCL device works: "
                                f"{' '.join(device_problem().split())}")


def pytest_collection_modifyitems(config, items):
    if not device_problem():
        return
    skip = pytest.mark.skip(reason=NO_DEVICE)
    for item in items:
        if item.get_closest_marker("opencl") or "gpu_only" in item.fixturenames:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    skipped = [r for r in terminalreporter.stats.get("skipped", [])
               if isinstance(r.longrepr, tuple) and r.longrepr[2].endswith(NO_DEVICE)]
    if skipped:
        problem = " ".join(device_problem().split()).split(". ")[0]  # its first sentence
        terminalreporter.write_line(f"minicaffe: {len(skipped)} tests skipped because no OpenCL device "
                                    f"works here ({problem}); {HOW_TO_GET_ONE}.", yellow=True)


@pytest.fixture(scope="module", params=[common.CPU, pytest.param(common.GPU, marks=pytest.mark.opencl)])
def mode(request):
    """Run the test once per engine, like Caffe's MultiDeviceTest."""
    with common.using_mode(request.param):
        yield request.param


@pytest.fixture
def gpu_only():
    """For the tests that compare both engines themselves (`compare_engines`, transfer
    counts): they run once, in gpu mode."""
    with common.using_mode(common.GPU):
        yield common.GPU
