#!/usr/bin/env sh
# Train LeNet with Caffe's solver settings. Extra arguments go to `minicaffe train`
# (e.g. --gpu 0 for the OpenCL engine).
set -e
minicaffe train --solver examples/mnist/lenet_solver.prototxt "$@"
