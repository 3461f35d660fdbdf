"""The bodies of the `minicaffe` command's longer verbs (Caffe's tools/ folder)."""
import importlib
import logging

from minicaffe.common import MinicaffeError

logger = logging.getLogger("minicaffe.caffe")


def optional_import(module: str, verb: str):
    """Import a library that only one tool needs, or say in one line how to get it.

    pydot and matplotlib are not core dependencies: `pip install 'minicaffe[docs]'`
    brings both (and the docs toolchain that uses them).
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise MinicaffeError(f"`minicaffe {verb}` needs {package}, which is not installed: "
                             f"pip install {package} (or pip install 'minicaffe[docs]')") from None


# Flags several verbs share (train, test, time, summary, quantize, export_onnx).
def parse_gpus(flag: str | None) -> list[int]:
    """`--gpu 0`, `--gpu 0,1` or `--gpu all` (which means device 0 here: one device per
    process; under mpiexec, train gives each rank its own id from the list)."""
    if not flag:
        return []
    if flag == "all":
        return [0]
    try:
        return [int(g) for g in flag.split(",")]
    except ValueError:
        raise MinicaffeError(f"--gpu takes device ids separated by ',' or 'all', got {flag!r}") from None


def parse_stages(flag: str | None) -> list[str]:
    return [s for s in (flag or "").split(",") if s]


def one_device(gpus: list[int]) -> list[int]:
    """The first of the device ids given: one process runs on one device."""
    for g in reversed(gpus[1:]):
        logger.info("Not using GPU #%d: minicaffe runs on one device", g)
    return gpus[:1]


def select_engine(gpu_flag: str | None) -> None:
    """For the verbs that run a built net (test, time, quantize): `--gpu N` runs on OpenCL
    device N (an error if it cannot), no `--gpu` on numpy."""
    from minicaffe.engine import select_mode
    gpus = one_device(parse_gpus(gpu_flag))
    if not gpus:
        logger.info("Use CPU.")
    select_mode(bool(gpus), gpus[0] if gpus else 0, required=True)
