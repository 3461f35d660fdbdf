#!/usr/bin/env sh
# Turn the MNIST IDX files into the LMDBs that lenet_train_test.prototxt reads.
# Run from the repository root. Uses the shipped 10k real training digits and the
# official 10k test set in data/mnist/; pass DATA=dir to use another folder holding
# the same file names (e.g. the full set from `minicaffe data mnist --dest DIR`,
# with TRAIN_PREFIX=train).
set -e
DATA=${DATA:-data/mnist}
TRAIN_PREFIX=${TRAIN_PREFIX:-train-10k}
EXAMPLE=examples/mnist

rm -rf $EXAMPLE/mnist_train_lmdb $EXAMPLE/mnist_test_lmdb
minicaffe convert_mnist_data $DATA/$TRAIN_PREFIX-images-idx3-ubyte.gz \
  $DATA/$TRAIN_PREFIX-labels-idx1-ubyte.gz $EXAMPLE/mnist_train_lmdb --backend lmdb
minicaffe convert_mnist_data $DATA/t10k-images-idx3-ubyte.gz \
  $DATA/t10k-labels-idx1-ubyte.gz $EXAMPLE/mnist_test_lmdb --backend lmdb
echo "Done."
