"""The layer catalogue is Caffe's: every type BVLC Caffe registers is registered here, and
nothing else."""
from minicaffe import layer_type_list

# BVLC Caffe's REGISTER_LAYER_CLASS / REGISTER_LAYER_CREATOR names (src/caffe/layers and
# layer_factory.cpp): 61, of which ImageData and WindowData build only with OpenCV (here
# Pillow does their image work).
CAFFE_TYPES = """
    AbsVal Accuracy ArgMax BNLL BatchNorm BatchReindex Bias Clip Concat ContrastiveLoss
    Convolution Crop Data Deconvolution Dropout DummyData ELU Eltwise Embed EuclideanLoss
    Exp Filter Flatten HDF5Data HDF5Output HingeLoss Im2col ImageData InfogainLoss
    InnerProduct Input LRN LSTM LSTMUnit Log MVN MemoryData MultinomialLogisticLoss PReLU
    Parameter Pooling Power Python RNN ReLU Reduction Reshape SPP Scale Sigmoid
    SigmoidCrossEntropyLoss Silence Slice Softmax SoftmaxWithLoss Split Swish TanH
    Threshold Tile WindowData""".split()


def test_the_catalogue_is_caffes_whole_build():
    assert len(set(CAFFE_TYPES)) == 61
    assert sorted(layer_type_list()) == sorted(CAFFE_TYPES)
