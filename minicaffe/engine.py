"""Which engine runs the layers: numpy (CPU mode) or OpenCL (GPU mode) on a chosen device.

Caffe decides this in `tools/caffe.cpp` from `--gpu` and the solver's `solver_mode` /
`device_id`. minicaffe adds one rule Caffe cannot need: a machine may have no OpenCL
device at all. Asking for one on the command line (`--gpu 0`) is then an error; a solver
file's `solver_mode: GPU` (Caffe's own examples set it) falls back to numpy with a one-line
warning. A device index that does not exist is always an error.
"""
from __future__ import annotations

import logging

from minicaffe import common
from minicaffe.common import MinicaffeError

logger = logging.getLogger(__name__)


def opencl_problem() -> str:
    """Why the OpenCL engine cannot run on the selected device ("" when it can).

    No pyopencl, no platform, no device, or a driver that fails the probe kernel are
    answers (the caller decides whether they are fatal). A device index that does not
    exist while others do is the user's typo, so it raises MinicaffeError, naming the
    devices there are.
    """
    try:
        from minicaffe import opencl
        opencl.devices()
    except Exception as error:  # no pyopencl, no platform, no device: all mean "no engine"
        return str(error)
    opencl.device()  # raises for an index that does not exist
    return "" if opencl.available() else opencl.why_unavailable()


def select_mode(use_gpu: bool, device_id: int = 0, required: bool = False) -> str:
    """Set the process-wide mode: GPU when asked for and the OpenCL engine works, else CPU.

    `required` (an explicit `--gpu N`): no working OpenCL device is an error. Otherwise
    (`solver_mode: GPU` in a solver file, as Caffe's own examples have) it is a one-line
    warning and the numpy engine runs. A device index that does not exist is always an
    error.
    """
    if use_gpu:
        previous_device = common.device_id()
        common.set_device(device_id)
        try:
            problem = opencl_problem()
        except MinicaffeError:
            common.set_device(previous_device)
            raise
        if not problem:
            common.set_mode(common.GPU)
            logger.info("Use GPU with device ID %d", device_id)
            return common.mode()
        common.set_device(previous_device)
        problem = " ".join(problem.split())  # one line, even for a build log
        if required:
            raise MinicaffeError(f"GPU device {device_id} was asked for, but the OpenCL engine "
                                 f"cannot run: {problem}")
        logger.warning("GPU mode asked for (device %d) but no working OpenCL engine was found "
                       "(%s); running on the CPU (numpy) instead", device_id, problem)
    common.set_mode(common.CPU)
    return common.mode()
