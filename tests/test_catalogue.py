"""The layer catalogue is Caffe's: every type BVLC Caffe registers is registered here, and
nothing else but the few types of minicaffe's own listed in EXTENSIONS."""
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

# minicaffe's own layer types, beyond Caffe's catalogue. Each is a deliberate extension,
# documented as one (its parameters are LayerParameter fields numbered from 10000 in
# caffe.proto); a prototxt that uses one runs on minicaffe only.
EXTENSIONS = {
    "DistillationLoss",  # knowledge distillation (Hinton et al. 2015), docs/distillation.md
}


def test_the_catalogue_is_caffes_whole_build():
    assert len(set(CAFFE_TYPES)) == 61
    assert not EXTENSIONS & set(CAFFE_TYPES)  # an extension never shadows a Caffe type
    assert sorted(layer_type_list()) == sorted(set(CAFFE_TYPES) | EXTENSIONS)
