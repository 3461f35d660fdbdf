"""Reading and writing data: IDX files (MNIST), LMDB databases, HDF5, images, and pycaffe's
`caffe.io` conversions.

* `idx`         IDX arrays, raw or gzipped (`read_idx`, `read_images`, `read_labels`).
* `db`          LMDB writer and positional, cyclic reader (Caffe's `util/db_lmdb.cpp`).
* `mnist`       Caffe's `convert_mnist_data` tool and a checked MNIST download.
* `hdf5`        HDF5 datasets, HDF5 weights and solver states in Caffe's layout (h5py).
* `image`       image files to C x H x W uint8 pixels, as Caffe's C++ reads them (OpenCV's way).
* `blobproto`   arrays to and from BlobProto, BlobProtoVector and Datum messages
                (`blobproto_to_array`, `array_to_blobproto`, `array_to_datum`, `datum_to_array`, ...).
* `transformer` pycaffe's Python-side preprocessing: `Transformer` (H x W x C image -> net
                input and back), `load_image` (float RGB in [0, 1]), `resize_image`, `oversample`.

`import minicaffe.io as io` (or pycaffe's `caffe.io`) gives all of the names below.
"""
from minicaffe.io.blobproto import (ArrayError, array_to_blobproto, array_to_datum,
                                    arraylist_to_blobprotovector_str, blobproto_to_array,
                                    blobprotovector_str_to_arraylist, datum_to_array)
from minicaffe.io.idx import read_idx, read_images, read_labels, write_idx
from minicaffe.io.transformer import Transformer, load_image, oversample, resize_image

__all__ = ["read_idx", "read_images", "read_labels", "write_idx",
           "ArrayError", "blobproto_to_array", "array_to_blobproto",
           "arraylist_to_blobprotovector_str", "blobprotovector_str_to_arraylist",
           "array_to_datum", "datum_to_array",
           "Transformer", "load_image", "resize_image", "oversample"]
