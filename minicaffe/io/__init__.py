"""Reading and writing data sets: IDX files (MNIST), LMDB databases of Datums.

* `idx`   IDX arrays, raw or gzipped (`read_idx`, `read_images`, `read_labels`).
* `db`    LMDB writer and positional, cyclic reader (Caffe's `util/db_lmdb.cpp`).
* `mnist` Caffe's `convert_mnist_data` tool and a checked MNIST download.
* `hdf5`  HDF5 datasets, HDF5 weights and solver states in Caffe's layout (h5py).
"""
from minicaffe.io.idx import read_idx, read_images, read_labels, write_idx

__all__ = ["read_idx", "read_images", "read_labels", "write_idx"]
