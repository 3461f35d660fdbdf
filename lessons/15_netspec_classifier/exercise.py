"""Lesson 15: LeNet written in Python with NetSpec, trained by a solver, used through
caffe.Classifier. Complete the three functions marked TODO.

Check your work:   python -m pytest lessons/15_netspec_classifier
Try it:            python lessons/15_netspec_classifier/exercise.py

Everything here is pycaffe's API: `import caffe` is minicaffe under pycaffe's name, so
the same code runs against BVLC Caffe's Python interface.
"""
import os
import tempfile
import time
from pathlib import Path

# Before numpy and caffe load. LeNet's matrices are small: a threaded BLAS only adds
# overhead, several times the run time on a busy machine. And, as pycaffe scripts do,
# hide the INFO lines (net set-up, solver parameters).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("GLOG_minloglevel", "1")

import numpy as np  # noqa: E402

import caffe  # noqa: E402
from caffe import layers as L, params as P  # noqa: E402,F401
from minicaffe.io.idx import read_images, read_labels  # noqa: E402

HERE = Path(__file__).resolve().parent
MNIST = HERE.parents[1] / "data" / "mnist"

# examples/mnist/lenet_solver.prototxt's hyper-parameters; `{net}` is the training net's
# path. No test net and no snapshots: we save the weights ourselves.
SOLVER = """\
net: "{net}"
base_lr: 0.01
momentum: 0.9
weight_decay: 0.0005
lr_policy: "inv"
gamma: 0.0001
power: 0.75
display: 0
max_iter: 10000
snapshot: 0
random_seed: 1
"""


def load_training_digits(count: int):
    """The first `count` training digits as a net sees them, (count, 1, 28, 28) float32:
    pixels times 0.00390625 (1/256, Caffe's transform_param { scale }), and their labels."""
    pixels = read_images(MNIST / "train-10k-images-idx3-ubyte.gz")[:count]
    labels = read_labels(MNIST / "train-10k-labels-idx1-ubyte.gz")[:count]
    return pixels[:, None].astype(np.float32) * np.float32(0.00390625), labels


def load_test_digits(count: int):
    """The first `count` test digits as image files load (caffe.io.load_image(path,
    color=False)): a list of 28 x 28 x 1 float32 images in [0, 1] (pixels / 255), and labels."""
    pixels = read_images(MNIST / "t10k-images-idx3-ubyte.gz")[:count]
    labels = read_labels(MNIST / "t10k-labels-idx1-ubyte.gz")[:count]
    return [p[:, :, None].astype(np.float32) / 255 for p in pixels], labels


def lenet(batch_size: int, deploy: bool = False):
    """LeNet as a NetParameter, written with caffe.NetSpec and returned by n.to_proto().

    Blobs, layers and settings (Caffe's examples/mnist LeNet):

        data, label  MemoryData: batch_size, channels 1, height 28, width 28 (ntop=2)
        conv1        Convolution: num_output 20, kernel_size 5, stride 1
        pool1        Pooling: MAX, kernel_size 2, stride 2
        conv2        Convolution: num_output 50, kernel_size 5, stride 1
        pool2        Pooling: MAX, kernel_size 2, stride 2
        ip1          InnerProduct: num_output 500
        relu1        ReLU on ip1, in place (its top is ip1)
        ip2          InnerProduct: num_output 10
        loss         SoftmaxWithLoss of ip2 and label

    Every Convolution and InnerProduct: weight_filler xavier, bias_filler constant, and
    param [lr_mult 1 (weights), lr_mult 2 (biases)].

    With deploy=True: the first layer is an Input `data` of shape (batch_size, 1, 28, 28)
    (no label), and the last is a Softmax `prob` of ip2 instead of the loss.
    """
    raise NotImplementedError("TODO: lesson 15, lenet")


def train(workdir, images: np.ndarray, labels: np.ndarray, iterations: int) -> Path:
    """Train lenet(64) for `iterations` SGD steps; return the path of the saved weights.

    In the folder `workdir`: write the training net's prototxt (str() of a NetParameter is
    its prototxt text), write SOLVER with its path, build caffe.SGDSolver from that file,
    hand the images (N, 1, 28, 28) and labels (N,) to the net's MemoryData layer with
    solver.net.set_input_arrays (float32 arrays, both), run solver.step(iterations), and
    save the weights with solver.net.save as workdir/lenet.caffemodel.
    """
    raise NotImplementedError("TODO: lesson 15, train")


def classify(deploy_prototxt, weights, images) -> np.ndarray:
    """The predicted class of each image, an integer array of len(images).

    `images` are 28 x 28 x 1 float arrays in [0, 1] (pixels / 255). Build a
    caffe.Classifier from the deploy prototxt and the weights, with image_dims (28, 28)
    and the preprocessing that turns such an image into exactly what the net was trained
    on (pixels times 0.00390625): see raw_scale and input_scale in the README. Predict
    with oversample=False; the class is the highest of the 10 probabilities.
    """
    raise NotImplementedError("TODO: lesson 15, classify")


if __name__ == "__main__":
    caffe.set_mode_cpu()
    print(lenet(1, deploy=True))
    train_x, train_y = load_training_digits(6400)
    test_images, test_y = load_test_digits(500)
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        weights = train(workdir, train_x, train_y, 150)
        print(f"150 iterations in {time.perf_counter() - start:.1f} s, weights in {weights.name}")
        deploy = Path(workdir) / "deploy.prototxt"
        deploy.write_text(str(lenet(64, deploy=True)))
        predicted = classify(deploy, weights, test_images)
    print(f"accuracy on {len(test_y)} unseen digits: {np.mean(predicted == test_y):.3f}")
    print("first 20 predicted:", *predicted[:20])
    print("first 20 true:     ", *test_y[:20])
