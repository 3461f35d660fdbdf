"""The bodies of the `minicaffe` command's longer verbs (Caffe's tools/ folder)."""
import importlib

from minicaffe.common import MinicaffeError


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
