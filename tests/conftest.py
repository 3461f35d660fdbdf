"""Shared test setup: hypothesis profiles and the per-engine `mode` fixture.

Profiles: `ci` (fast, the default under CI=true), `dev` (thorough, the default
otherwise). Pick one with HYPOTHESIS_PROFILE=ci|dev.
"""
import os

import pytest
from hypothesis import HealthCheck, settings

from minicaffe import common

settings.register_profile("ci", max_examples=8, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def engines():
    """The engines every layer test runs on: numpy always, OpenCL where a device works.

    CI installs PoCL and tests/test_opencl.py fails without a device, so the OpenCL
    half can never be dropped silently there.
    """
    from minicaffe import opencl
    return [common.CPU, common.GPU] if opencl.available() else [common.CPU]


@pytest.fixture(scope="module", params=engines())
def mode(request):
    """Run the test once per engine, like Caffe's MultiDeviceTest."""
    with common.using_mode(request.param):
        yield request.param


@pytest.fixture(scope="module")
def gpu_only(mode):
    """For the tests that compare both engines themselves (`compare_engines`, transfer
    counts): one run is enough, so they run under the gpu mode and skip the cpu one."""
    if mode != common.GPU:
        pytest.skip("compares both engines itself: runs once, under the gpu mode")
