"""Where the tests find Caffe's own prototxts: `../shared/caffe_models` beside the
repository (BVLC Caffe's `models/` and `examples/`, ResNet and SqueezeNet; licences in
that folder). They are read from there, never copied into the project."""
from pathlib import Path

import pytest

CAFFE_MODELS = Path(__file__).resolve().parents[2] / "shared" / "caffe_models"


def caffe_prototxts() -> list[Path]:
    """Every prototxt in the folder, or [] when it is not there."""
    return sorted(CAFFE_MODELS.rglob("*.prototxt")) if CAFFE_MODELS.is_dir() else []


def require_caffe_models() -> None:
    if not CAFFE_MODELS.is_dir():
        pytest.skip(f"Caffe's model definitions are not at {CAFFE_MODELS}")
