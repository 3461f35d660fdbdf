"""Reading and writing Caffe's protobuf files, with errors that say where.

* prototxt (nets, solvers): protobuf text format. A syntax error names the file,
  line and column: `lenet.prototxt:12:5: Expected "}"`.
* binary (.caffemodel, .solverstate, .binaryproto means): wire format. A truncated or
  corrupt file is named as such instead of surfacing protobuf's DecodeError.
* Writes go to a temporary file in the same folder, then `os.replace` renames it, so
  a crash mid-write never leaves half a snapshot under the real name.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from google.protobuf import message as pb_message
from google.protobuf import text_format

from minicaffe.common import MinicaffeError
from minicaffe.proto import caffe_pb2


def read_text(path, message):
    """Parse the prototxt at `path` into `message` (a fresh protobuf message)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise MinicaffeError(f"{path}: no such file") from None
    except (OSError, ValueError) as err:  # unreadable, not UTF-8 (a ValueError), a NUL in the path
        raise MinicaffeError(f"{path}: cannot read it as text ({err})") from None
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as err:
        where = f"{path}:{err.GetLine()}:{err.GetColumn()}" if err.GetLine() else str(path)
        detail = str(err).split(" : ", 1)[-1]
        raise MinicaffeError(f"{where}: {detail} (while reading a {message.DESCRIPTOR.name})") from None
    return message


def read_binary(path, message):
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MinicaffeError(f"{path}: no such file") from None
    except (OSError, ValueError) as err:  # a folder, no permission; ValueError: a NUL in the path
        raise MinicaffeError(f"{path}: cannot read it ({err})") from None
    try:
        message.ParseFromString(data)
    except (pb_message.DecodeError, UnicodeDecodeError) as err:
        raise MinicaffeError(f"{path}: not a valid {message.DESCRIPTOR.name} "
                             f"(truncated or corrupt file: {err})") from None
    field = _field_holding_bytes(message)
    if field:
        raise MinicaffeError(f"{path}: not a valid {message.DESCRIPTOR.name} (corrupt file: the "
                             f"text field {field} is not UTF-8)")
    return message


def _field_holding_bytes(message) -> str | None:
    """The name of a string field whose value came back as bytes, if any.

    protobuf's upb runtime parses a proto2 string that is not valid UTF-8 (a damaged
    file) into bytes instead of failing; later code that takes it for text would crash.
    """
    for field, value in message.ListFields():
        values = value if field.is_repeated else [value]
        if field.type == field.TYPE_STRING and any(isinstance(v, bytes) for v in values):
            return field.full_name
        if field.type == field.TYPE_MESSAGE:
            for sub in values:
                found = _field_holding_bytes(sub)
                if found:
                    return found
    return None


def read_net_param(path) -> caffe_pb2.NetParameter:
    """A NetParameter from a prototxt, or from a binary .caffemodel."""
    path = Path(path)
    if path.suffix in (".caffemodel", ".binaryproto"):
        return read_binary(path, caffe_pb2.NetParameter())
    return read_text(path, caffe_pb2.NetParameter())


def read_solver_param(path) -> caffe_pb2.SolverParameter:
    return read_text(path, caffe_pb2.SolverParameter())


def current_umask() -> int:
    """The process's umask (reading it means setting it, so set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename.

    The folder must exist, as in Caffe (no folder is created behind the user's back). The
    file gets the permissions any new file gets (0666 less the umask): mkstemp makes its
    temporary file private (0600), and the rename would otherwise keep that.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise MinicaffeError(f"cannot write {path}: the directory {path.parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise MinicaffeError(f"cannot write {path}: {err.strerror}") from None
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)  # make the rename itself survive a power cut
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_binary(path, message) -> None:
    write_atomic(path, message.SerializeToString())


def write_text(path, message) -> None:
    write_atomic(path, text_format.MessageToString(message).encode())
