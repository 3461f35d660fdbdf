r"""HDF5 files as Caffe reads and writes them (Caffe's `util/hdf5.cpp`), through h5py.

Three uses share these helpers:

* the HDF5Data layer reads any number of named datasets from a list of `.h5` files;
* the HDF5Output layer writes its bottoms as datasets `data` and `label`;
* `snapshot_format: HDF5` writes weights and solver state in Caffe's layout:

      <prefix>_iter_N.caffemodel.h5      /data/<layer name>/<j>   parameter j of the layer
                                         /diff/<layer name>/<j>   (only with snapshot_diff)
      <prefix>_iter_N.solverstate.h5     /iter, /current_step     integer scalars
                                         /learned_net             the .caffemodel.h5 path
                                         /history/<i>             solver history blob i

Every dataset is float32 (Caffe's Dtype); reading accepts any float or integer dataset
and converts it, as Caffe does, and refuses strings, compounds and the like.
"""
from __future__ import annotations

import io

import h5py
import numpy as np

from minicaffe import protoio
from minicaffe.common import MinicaffeError
from minicaffe.proto import caffe_pb2


def is_hdf5(path) -> bool:
    """Whether `path` names an HDF5 file: Caffe picks the format by the `.h5` suffix."""
    return str(path).endswith(".h5")


def open_for_reading(path, owner: str) -> h5py.File:
    """Open an existing HDF5 file; a missing or damaged file is one clear error."""
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise MinicaffeError(f"{owner}: HDF5 file {str(path)!r} does not exist") from None
    except (OSError, ValueError) as err:  # not HDF5, a folder, no permission
        raise MinicaffeError(f"{owner}: failed opening HDF5 file {str(path)!r} ({err})") from None


def load_dataset(group, name: str, where: str, min_dim: int = 1) -> np.ndarray:
    """Dataset `name` of `group` as float32, with at least `min_dim` axes.

    `where` names the file for messages. Integer data is converted, as Caffe's
    hdf5_load_nd_dataset does; other kinds of data are refused.
    """
    item = group.get(name)
    if not isinstance(item, h5py.Dataset):
        present = sorted(k for k in group.keys() if isinstance(group[k], h5py.Dataset))
        raise MinicaffeError(f"{where}: no HDF5 dataset {name!r} (datasets present: {present})")
    kind = item.dtype
    if kind == np.bool_ or not (np.issubdtype(kind, np.floating) or np.issubdtype(kind, np.integer)):
        raise MinicaffeError(f"{where}: dataset {name!r} holds {kind}; only float or integer "
                             "datasets can be read into a blob")
    if item.ndim < min_dim:
        raise MinicaffeError(f"{where}: dataset {name!r} has {item.ndim} axes; at least "
                             f"{min_dim} are needed")
    return np.asarray(item[()], dtype=np.float32)


def to_bytes(write) -> bytes:
    """The bytes of an HDF5 file built in memory by `write(h5py.File)`.

    Snapshots are built in memory and then written with protoio.write_atomic, so a crash
    never leaves a half-written file under the final name.
    """
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        write(f)
    return buffer.getvalue()


# ---- weights (Caffe's Net::ToHDF5 / CopyTrainedLayersFromHDF5)
def save_net(net, path, write_diff: bool = False) -> None:
    """Write `net`'s parameters as a `.caffemodel.h5` in Caffe's layout (atomically).

    As in Caffe's Net::ToHDF5, every layer gets a group (empty if it has no parameters),
    and a parameter shared with an earlier layer (`param { name: ... }`) has its data
    written only under the layer that owns it, while diffs are written for every layer.
    """
    owned = {(r.owner, r.index) for r in net.param_records}  # Caffe's param_owners_ == -1

    def write(f):
        data = f.create_group("data")
        diff = f.create_group("diff") if write_diff else None
        for name, layer in zip(net.layer_names, net.layers):
            data_group = data.require_group(name)
            diff_group = diff.require_group(name) if diff is not None else None
            for j, blob in enumerate(layer.blobs):
                if (name, j) in owned:
                    data_group.create_dataset(str(j), data=np.asarray(blob.cpu_data(), np.float32))
                if diff_group is not None:
                    diff_group.create_dataset(str(j), data=np.asarray(blob.cpu_diff(), np.float32))
    protoio.write_atomic(path, to_bytes(write))


def copy_trained_layers(net, path) -> None:
    """Copy parameters by layer name from a `.caffemodel.h5` (Caffe's CopyTrainedLayersFromHDF5).

    Layers of the file that the net lacks are ignored; a layer with more datasets than the
    net has blobs, a missing dataset of a parameter the layer owns, or a shape mismatch is
    an error.
    """
    where = str(path)
    # (layer, j) of every parameter that is its own; the others share an owner's memory.
    owned = {(r.owner, r.index) for r in net.param_records}
    with open_for_reading(path, "loading weights") as f:
        if not isinstance(f.get("data"), h5py.Group):
            raise MinicaffeError(f"{where}: no group 'data'; not a Caffe .caffemodel.h5")
        data = f["data"]
        copied = []
        for name, layer in zip(net.layer_names, net.layers):
            if name not in data:
                continue
            group = data[name]
            # Count datasets only: a layer named "a/b" is a group inside layer "a"'s group.
            stored = sum(isinstance(item, h5py.Dataset) for item in group.values())
            if stored > len(layer.blobs):
                raise MinicaffeError(f"{where}: layer {name!r} has {stored} parameter "
                                     f"dataset(s) in the file and {len(layer.blobs)} blob(s) in the net")
            for j, blob in enumerate(layer.blobs):
                if str(j) not in group:
                    if (name, j) not in owned:
                        continue  # shared: loaded through the layer that owns it
                    raise MinicaffeError(f"{where}: layer {name!r} has no dataset '{j}'; "
                                         f"the net's layer has {len(layer.blobs)} parameter blob(s)")
                values = load_dataset(group, str(j), f"{where}: layer {name!r}", min_dim=0)
                if values.shape != tuple(blob.shape):
                    raise MinicaffeError(
                        f"{where}: cannot copy param {j} weights of layer {name!r}; shape mismatch: "
                        f"the file has {values.shape}, the net has {tuple(blob.shape)}. To learn this "
                        "layer's parameters from scratch rather than copying them, rename the layer.")
                blob.mutable_cpu_data()[...] = values
            if layer.blobs:
                copied.append(name)
        # The file's layer names, for the message when none of them fits the net.
        in_file = caffe_pb2.NetParameter(layer=[caffe_pb2.LayerParameter(name=n) for n in data])
    net._report_copied_layers(where, in_file, copied)


# ---- solver state (Caffe's SGDSolver::SnapshotSolverStateToHDF5 / RestoreSolverStateFromHDF5)
def save_solver_state(path, state: caffe_pb2.SolverState, history) -> None:
    """Write iter, learned_net, current_step and the history blobs in Caffe's layout.

    The integers are 1-element int32 datasets and the name a scalar NUL-terminated string,
    as HDF5's H5LTmake_dataset_int / _string (which Caffe uses) make them, so Caffe can
    read the file too.
    """
    def write(f):
        f.create_dataset("iter", data=np.array([state.iter], np.int32))
        f.create_dataset("learned_net", data=np.bytes_(state.learned_net.encode() + b"\0"),
                         dtype=_nul_terminated(len(state.learned_net.encode()) + 1))
        f.create_dataset("current_step", data=np.array([state.current_step], np.int32))
        group = f.create_group("history")
        for i, blob in enumerate(history):
            group.create_dataset(str(i), data=np.asarray(blob.cpu_data(), np.float32))
    protoio.write_atomic(path, to_bytes(write))


def _nul_terminated(size: int) -> h5py.Datatype:
    """A fixed-size C string type, NUL-terminated (H5LTmake_dataset_string's type)."""
    kind = h5py.h5t.C_S1.copy()
    kind.set_size(size)
    kind.set_strpad(h5py.h5t.STR_NULLTERM)
    return h5py.Datatype(kind)


def _int(dataset) -> int:
    """An integer stored as Caffe does (a 1-element dataset) or as a scalar."""
    values = np.asarray(dataset[()]).reshape(-1)
    if values.size != 1 or not np.issubdtype(values.dtype, np.integer):
        raise MinicaffeError(f"{dataset.file.filename}: {dataset.name} should hold one integer, "
                             f"holds {values.dtype} of shape {dataset.shape}")
    return int(values[0])


def load_solver_state(path) -> caffe_pb2.SolverState:
    """A `.solverstate.h5` as the SolverState message the binary format would give."""
    where = str(path)
    with open_for_reading(path, "restoring the solver") as f:
        for key in ("iter", "current_step", "history"):
            if key not in f:
                raise MinicaffeError(f"{where}: no {key!r} in this HDF5 file; not a Caffe .solverstate.h5")
        state = caffe_pb2.SolverState(iter=_int(f["iter"]), current_step=_int(f["current_step"]))
        if "learned_net" in f:
            learned = f["learned_net"][()]
            learned = learned.decode() if isinstance(learned, bytes) else str(learned)
            learned = learned.rstrip("\0")
            if learned:  # Caffe loads the weights only when the name is not empty
                state.learned_net = learned
        history = f["history"]
        for i in range(len(history)):
            values = load_dataset(history, str(i), f"{where}: history", min_dim=0)
            proto = state.history.add()
            proto.shape.dim.extend(values.shape)
            proto.data.extend(values.ravel().tolist())
    return state

