"""The layer catalogue is Caffe's: every type of BVLC Caffe's CPU build is registered here,
except the eight that come with recurrent nets, data files and Python layers."""
from minicaffe import layer_type_list

# BVLC Caffe's REGISTER_LAYER_CLASS / REGISTER_LAYER_CREATOR names (src/caffe/layers and
# layer_factory.cpp): 61, of which ImageData and WindowData build only with OpenCV.
CAFFE_TYPES = """
    AbsVal Accuracy ArgMax BNLL BatchNorm BatchReindex Bias Clip Concat ContrastiveLoss
    Convolution Crop Data Deconvolution Dropout DummyData ELU Eltwise Embed EuclideanLoss
    Exp Filter Flatten HDF5Data HDF5Output HingeLoss Im2col ImageData InfogainLoss
    InnerProduct Input LRN LSTM LSTMUnit Log MVN MemoryData MultinomialLogisticLoss PReLU
    Parameter Pooling Power Python RNN ReLU Reduction Reshape SPP Scale Sigmoid
    SigmoidCrossEntropyLoss Silence Slice Softmax SoftmaxWithLoss Split Swish TanH
    Threshold Tile WindowData""".split()
OPENCV_ONLY = {"ImageData", "WindowData"}
# Recurrent nets, data sources and Python layers: the next step of the catalogue.
NOT_YET = {"DummyData", "MemoryData", "HDF5Data", "HDF5Output", "Python", "LSTMUnit"}


def test_the_catalogue_is_caffes_cpu_build_less_the_recurrent_data_and_python_layers():
    assert len(CAFFE_TYPES) == 61
    expected = set(CAFFE_TYPES) - OPENCV_ONLY - NOT_YET
    assert len(expected) == 53
    registered = set(layer_type_list())
    assert sorted(expected - registered) == [], "missing"
    assert sorted(registered - set(CAFFE_TYPES)) == [], "not Caffe's"
