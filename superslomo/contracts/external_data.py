"""Refusing ONNX files whose tensors say to read their data from outside the model folder.

An ONNX tensor may keep its bytes in another file (`external_data`, key `location`). The path is
data from whoever made the folder: `../../home/me/.ssh/id_rsa` or an absolute path would make the
loader read that file into a weight. onnxruntime refuses such paths only from about 1.24 (this
package allows >= 1.17, and Jetson wheels are older), and TensorRT's parser and older onnx
releases read them too, so every ONNX graph is checked here first.

numpy- and onnx-free: a small walk over the protobuf wire format, visiting only the messages
that can hold a TensorProto (graphs, nodes' attributes, sparse tensors, functions, training info).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from superslomo.errors import SloMoError

_LEN = 2  # wire type of strings, bytes and sub-messages

# For each message kind: {field number: kind of the sub-message it holds} (onnx.proto3).
_MESSAGES: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "function": {7: "node"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {13: "entry"},
}
_TENSOR_NAME = 8
_ENTRY_KEY, _ENTRY_VALUE = 1, 2


class _Malformed(Exception):
    pass


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Malformed("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: memoryview) -> Iterator[tuple[int, int, memoryview | int]]:
    """(field number, wire type, value) of one message; length-delimited values as views."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed("field number 0")
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, wire, value
        elif wire == 1 or wire == 5:
            pos += 8 if wire == 1 else 4
            if pos > len(data):
                raise _Malformed("truncated fixed-size field")
        elif wire == _LEN:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise _Malformed("truncated field")
            yield number, wire, data[pos : pos + size]
            pos += size
        else:
            raise _Malformed(f"wire type {wire}")


def _text(value: memoryview) -> str:
    return bytes(value).decode("utf-8", errors="replace")


def external_locations(data: bytes | memoryview) -> list[tuple[str, str]]:
    """(tensor name, location) of every tensor in a serialized ModelProto that names external data."""
    found: list[tuple[str, str]] = []
    stack: list[tuple[str, memoryview]] = [("model", memoryview(data))]
    while stack:
        kind, message = stack.pop()
        wanted = _MESSAGES[kind]
        name = ""
        locations = []
        for number, wire, value in _fields(message):
            if kind == "tensor" and number == _TENSOR_NAME and wire == _LEN:
                name = _text(value)  # type: ignore[arg-type]
            elif number in wanted and wire == _LEN:
                if wanted[number] == "entry":
                    entry = {n: _text(v) for n, w, v in _fields(value) if w == _LEN}  # type: ignore[arg-type]
                    if entry.get(_ENTRY_KEY) == "location":
                        locations.append(entry.get(_ENTRY_VALUE, ""))
                else:
                    stack.append((wanted[number], value))  # type: ignore[arg-type]
        found.extend((name, location) for location in locations)
    return found


def _escapes(location: str, folder: Path) -> bool:
    if (
        not location
        or os.path.isabs(location)
        or location.startswith(("\\", "/"))
        or re.match(r"[A-Za-z]:", location)
    ):
        return True  # empty, or absolute (POSIX, UNC or a Windows drive)
    parts = location.replace("\\", "/").split("/")
    if ".." in parts:
        return True
    real_folder = os.path.realpath(folder)
    real = os.path.realpath(os.path.join(real_folder, location))  # a symlink must not lead out either
    return os.path.commonpath([real_folder, real]) != real_folder


def check_external_data(path: str | os.PathLike, folder: str | os.PathLike | None = None) -> None:
    """Raise SloMoError (one line) unless every external-data location of the ONNX file at `path`
    is a relative path that stays inside `folder` (default: the file's own folder)."""
    path = Path(path)
    folder = Path(folder) if folder is not None else path.parent
    data = path.read_bytes()  # the loader reads it whole next; weights are skipped, not parsed
    if not data:
        raise SloMoError(f"{path} is empty, not an ONNX model")
    try:
        locations = external_locations(data)
    except _Malformed as error:
        raise SloMoError(f"{path} is not an ONNX model (malformed protobuf: {error})") from None
    for tensor, location in locations:
        if _escapes(location, folder):
            raise SloMoError(
                f"{path}: tensor {tensor!r} names external data {location!r} outside its folder "
                f"{folder}; refusing to read it (re-export the model)"
            )
