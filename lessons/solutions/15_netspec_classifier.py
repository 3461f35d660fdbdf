"""Lesson 15, reference solution: LeNet written with NetSpec, trained by a solver, used
through caffe.Classifier."""
from pathlib import Path

import numpy as np

import caffe
from caffe import layers as L, params as P

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


def lenet(batch_size: int, deploy: bool = False):
    n = caffe.NetSpec()
    if deploy:
        n.data = L.Input(shape=dict(dim=[batch_size, 1, 28, 28]))
    else:
        n.data, n.label = L.MemoryData(batch_size=batch_size, channels=1, height=28, width=28,
                                       ntop=2)
    # Weights learn at the base rate, biases twice as fast: Caffe's LeNet example.
    learn = dict(param=[dict(lr_mult=1), dict(lr_mult=2)],
                 weight_filler=dict(type="xavier"), bias_filler=dict(type="constant"))
    n.conv1 = L.Convolution(n.data, num_output=20, kernel_size=5, stride=1, **learn)
    n.pool1 = L.Pooling(n.conv1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.conv2 = L.Convolution(n.pool1, num_output=50, kernel_size=5, stride=1, **learn)
    n.pool2 = L.Pooling(n.conv2, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.ip1 = L.InnerProduct(n.pool2, num_output=500, **learn)
    n.relu1 = L.ReLU(n.ip1, in_place=True)
    n.ip2 = L.InnerProduct(n.ip1, num_output=10, **learn)
    if deploy:
        n.prob = L.Softmax(n.ip2)
    else:
        n.loss = L.SoftmaxWithLoss(n.ip2, n.label)
    return n.to_proto()


def train(workdir, images: np.ndarray, labels: np.ndarray, iterations: int) -> Path:
    workdir = Path(workdir)
    net_path = workdir / "lenet_train.prototxt"
    net_path.write_text(str(lenet(64)))
    solver_path = workdir / "lenet_solver.prototxt"
    solver_path.write_text(SOLVER.format(net=net_path))
    solver = caffe.SGDSolver(str(solver_path))
    # MemoryData reads these arrays in place: float32, C-contiguous, kept alive by us.
    images = np.ascontiguousarray(images, dtype=np.float32)
    labels = np.ascontiguousarray(labels, dtype=np.float32)
    solver.net.set_input_arrays(images, labels)
    solver.step(iterations)
    weights = workdir / "lenet.caffemodel"
    solver.net.save(str(weights))
    return weights


def classify(deploy_prototxt, weights, images) -> np.ndarray:
    # Training saw pixels times 0.00390625; the images are pixels / 255. raw_scale 255
    # gives the pixels back, input_scale then applies the training's own scale.
    net = caffe.Classifier(str(deploy_prototxt), str(weights), image_dims=(28, 28),
                           raw_scale=255, input_scale=0.00390625)
    probabilities = net.predict(images, oversample=False)
    return probabilities.argmax(axis=1)
