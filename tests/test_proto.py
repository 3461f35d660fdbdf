"""Our caffe.proto: the generated module is current, field numbers are Caffe's, and
malformed prototxt is reported with file, line and column."""
import subprocess
import sys
from pathlib import Path

import pytest

from minicaffe import protoio
from minicaffe.common import MinicaffeError
from minicaffe.net import TEST, Net
from minicaffe.proto import caffe_pb2
from tests.zoo import CAFFE_MODELS, caffe_prototxts, require_caffe_models

PROTO_DIR = Path(__file__).resolve().parents[1] / "minicaffe" / "proto"


def test_generated_module_is_current(tmp_path):
    # The exact command written at the top of caffe.proto.
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}",
                    f"--python_out={tmp_path}", str(PROTO_DIR / "caffe.proto")], check=True)
    assert (tmp_path / "caffe_pb2.py").read_text() == (PROTO_DIR / "caffe_pb2.py").read_text(), \
        "minicaffe/proto/caffe_pb2.py is stale: regenerate it with the command in caffe.proto"


@pytest.mark.parametrize("message, field, number", [
    ("BlobProto", "data", 5), ("BlobProto", "shape", 7), ("Datum", "label", 5),
    ("NetParameter", "layer", 100), ("LayerParameter", "convolution_param", 106),
    ("LayerParameter", "inner_product_param", 117), ("LayerParameter", "pooling_param", 121),
    ("LayerParameter", "loss_param", 101), ("LayerParameter", "propagate_down", 11),
    ("SolverParameter", "net", 24), ("SolverParameter", "lr_policy", 8),
    ("SolverParameter", "iter_size", 36), ("SolverParameter", "clip_gradients", 35),
    ("SolverState", "history", 3), ("ParamSpec", "decay_mult", 4),
    ("PoolingParameter", "round_mode", 13), ("ConvolutionParameter", "dilation", 18),
])
def test_field_numbers_are_caffes(message, field, number):
    assert getattr(caffe_pb2, message).DESCRIPTOR.fields_by_name[field].number == number


def test_caffe_defaults():
    assert caffe_pb2.FillerParameter().type == "constant"
    assert caffe_pb2.ParamSpec().lr_mult == 1.0
    assert caffe_pb2.LossParameter().normalization == caffe_pb2.LossParameter.VALID
    assert caffe_pb2.SolverParameter().solver_mode == caffe_pb2.SolverParameter.GPU
    assert caffe_pb2.NetState().phase == caffe_pb2.TEST


def test_malformed_prototxt_names_file_line_column(tmp_path):
    path = tmp_path / "bad.prototxt"
    path.write_text('name: "x"\nlayer {\n  name: "a"\n  type: "ReLU"\n  bottom "b"\n')
    with pytest.raises(MinicaffeError) as err:
        protoio.read_net_param(path)
    assert f"{path}:5:" in str(err.value)


def test_unknown_field_is_named(tmp_path):
    path = tmp_path / "bad.prototxt"
    path.write_text('layer {\n  name: "a"\n  kernal_size: 3\n}\n')
    with pytest.raises(MinicaffeError, match=r"bad.prototxt:3:.*kernal_size"):
        protoio.read_net_param(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(MinicaffeError, match="nope.prototxt: no such file"):
        protoio.read_solver_param(tmp_path / "nope.prototxt")


def test_truncated_binary_is_named(tmp_path):
    param = caffe_pb2.NetParameter(name="n")
    param.layer.add(name="ip", type="InnerProduct").blobs.add().data.extend(range(100))
    path = tmp_path / "w.caffemodel"
    path.write_bytes(param.SerializeToString()[:-7])
    with pytest.raises(MinicaffeError, match="w.caffemodel: not a valid NetParameter"):
        protoio.read_net_param(path)


def test_write_atomic_leaves_no_temp_and_keeps_old_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "a.bin"
    protoio.write_atomic(path, b"old")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a.bin"]

    def broken_replace(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr("os.replace", broken_replace)
    with pytest.raises(OSError):
        protoio.write_atomic(path, b"new")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a.bin"]


# ---- the whole schema: Caffe's 63 messages, and every prototxt Caffe ships parses
CAFFE_MESSAGES = """
    BlobShape BlobProto BlobProtoVector Datum FillerParameter NetParameter SolverParameter
    SolverState NetState NetStateRule ParamSpec LayerParameter TransformationParameter
    LossParameter AccuracyParameter ArgMaxParameter ClipParameter ConcatParameter
    BatchNormParameter BiasParameter ContrastiveLossParameter ConvolutionParameter
    CropParameter DataParameter DropoutParameter DummyDataParameter EltwiseParameter
    ELUParameter EmbedParameter ExpParameter FlattenParameter HDF5DataParameter
    HDF5OutputParameter HingeLossParameter ImageDataParameter InfogainLossParameter
    InnerProductParameter InputParameter LogParameter LRNParameter MemoryDataParameter
    MVNParameter ParameterParameter PoolingParameter PowerParameter PReLUParameter PythonParameter
    RecurrentParameter ReductionParameter ReLUParameter ReshapeParameter ScaleParameter
    SigmoidParameter SliceParameter SoftmaxParameter SwishParameter TanHParameter
    TileParameter ThresholdParameter WindowDataParameter SPPParameter V1LayerParameter
    V0LayerParameter""".split()

# minicaffe's own messages and LayerParameter fields (extensions, not in Caffe's schema):
# field numbers from 10000, far above Caffe's (all below 1100), so no field Caffe adds can clash.
EXTENSION_MESSAGES = {"DistillationParameter"}
EXTENSION_LAYER_FIELDS = {"distillation_param": 10001}


def test_every_caffe_message_is_in_the_schema():
    # The list above is the table of contents of BVLC Caffe's caffe.proto: 63 messages.
    assert len(CAFFE_MESSAGES) == 63
    assert set(caffe_pb2.DESCRIPTOR.message_types_by_name) == set(CAFFE_MESSAGES) | EXTENSION_MESSAGES


def test_extension_fields_are_numbered_clear_of_caffes():
    fields = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    assert {name: fields[name].number for name in EXTENSION_LAYER_FIELDS} == EXTENSION_LAYER_FIELDS
    ours = {f.name for f in fields.values() if f.number >= 10000}
    assert ours == set(EXTENSION_LAYER_FIELDS)  # every field up there is a declared extension
    assert caffe_pb2.DistillationParameter().temperature == 4.0
    assert caffe_pb2.DistillationParameter().axis == 1


@pytest.mark.parametrize("message, field, number", [
    ("NetParameter", "layers", 2), ("V1LayerParameter", "layer", 1),
    ("V1LayerParameter", "blobs_lr", 7), ("V0LayerParameter", "kernelsize", 8),
    ("LayerParameter", "clip_param", 148), ("LayerParameter", "swish_param", 147),
    ("LayerParameter", "recurrent_param", 146), ("LayerParameter", "spp_param", 132),
    ("ReductionParameter", "coeff", 3), ("MVNParameter", "eps", 3),
])
def test_new_field_numbers_are_caffes(message, field, number):
    assert getattr(caffe_pb2, message).DESCRIPTOR.fields_by_name[field].number == number


def test_new_defaults_are_caffes():
    assert caffe_pb2.MVNParameter().eps == pytest.approx(1e-9)
    assert caffe_pb2.MVNParameter().normalize_variance is True
    assert caffe_pb2.ContrastiveLossParameter().margin == 1.0
    assert caffe_pb2.HingeLossParameter().norm == caffe_pb2.HingeLossParameter.L1
    assert caffe_pb2.ReductionParameter().operation == caffe_pb2.ReductionParameter.SUM
    assert caffe_pb2.TileParameter().axis == 1
    assert caffe_pb2.SwishParameter().beta == 1.0
    assert caffe_pb2.V1LayerParameter.LayerType.Value("ABSVAL") == 35
    assert caffe_pb2.V0LayerParameter().det_crop_mode == "warp"


@pytest.mark.parametrize("path", caffe_prototxts(), ids=lambda p: str(p.relative_to(CAFFE_MODELS)))
def test_every_caffe_prototxt_parses(path):
    if "solver" in path.name:
        param = protoio.read_solver_param(path)
        assert param.base_lr > 0
    else:
        param = protoio.read_net_param(path)
        assert len(param.layer) > 0 and all(layer.type for layer in param.layer)


def test_all_of_caffes_prototxts_are_found():
    require_caffe_models()
    # models/ (7 nets with their solvers), examples/ and ResNet/SqueezeNet: 63 files.
    assert len(caffe_prototxts()) == 63


def test_a_v1_prototxt_is_read_as_written_and_upgraded_by_the_net(tmp_path):
    path = tmp_path / "v1.prototxt"
    path.write_text('name: "old"\ninput: "x"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 1\ninput_dim: 1\n'
                    'layers {\n  name: "ip"\n  type: INNER_PRODUCT\n  bottom: "x"\n'
                    '  top: "y"\n  inner_product_param { num_output: 2 }\n}\n')
    # protoio reads the file as it is; the Net brings it up to date (minicaffe.upgrade).
    assert protoio.read_net_param(path).layers[0].type == caffe_pb2.V1LayerParameter.INNER_PRODUCT
    net = Net(str(path), TEST)
    assert [layer.type for layer in net.layers] == ["Input", "InnerProduct"]
    assert net.blobs["y"].shape == (1, 2)
