"""Framing of ``messages`` on a byte stream: a fixed prefix, a JSON header, raw buffers.

    frame = header_len:u32le  payload_len:u64le  header(JSON)  payload(tensor bytes)

Numeric tensors are their little-endian bytes (decoded with ``np.frombuffer``, no copy);
BYTES tensors are 4-byte length-prefixed elements as in the V2 binary extension.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

from modelbay.serving.messages import (
    AbortTask,
    GenerateEvent,
    GenerateTask,
    InferDone,
    InferTask,
    Message,
    ReplicaReady,
    Shutdown,
    TaskFailed,
)
from modelbay.tensors import bytes_items, object_array, pack_bytes, unpack_bytes

PREFIX = struct.Struct("<IQ")
_BYTES = "BYTES"


def encode(message: Message) -> list[bytes | memoryview]:
    """The frame as a list of buffers (to write without joining)."""
    header: dict[str, Any]
    buffers: list[bytes | memoryview] = []
    if isinstance(message, InferTask):
        tensors, buffers = _tensors(message.inputs)
        header = {"kind": "task", "id": message.id, "tensors": tensors, "outputs": message.outputs}
    elif isinstance(message, InferDone):
        tensors, buffers = _tensors(message.outputs)
        header = {
            "kind": "done",
            "id": message.id,
            "tensors": tensors,
            "compute_s": message.compute_s,
        }
    elif isinstance(message, TaskFailed):
        header = {
            "kind": "failed",
            "id": message.id,
            "status": message.status,
            "message": message.message,
            "type": message.type,
            "param": message.param,
            "code": message.code,
        }
    elif isinstance(message, GenerateTask):
        header = {"kind": "generate", "id": message.id, "request": message.request}
    elif isinstance(message, GenerateEvent):
        header = {"kind": "event", "id": message.id, "data": message.data, "final": message.final}
    elif isinstance(message, AbortTask):
        header = {"kind": "abort", "id": message.id}
    elif isinstance(message, ReplicaReady):
        header = {
            "kind": "ready",
            "pid": message.pid,
            "load_s": message.load_s,
            "signature": message.signature,
        }
    else:
        header = {"kind": "shutdown"}
    head = orjson.dumps(header)
    payload = sum(len(b) for b in buffers)
    return [PREFIX.pack(len(head), payload), head, *buffers]


def decode(header_bytes: bytes, payload: bytes | bytearray | memoryview) -> Message:
    """A message from its header and payload (arrays view ``payload``: keep it alive)."""
    header = orjson.loads(header_bytes)
    kind = header["kind"]
    if kind == "task":
        return InferTask(header["id"], _arrays(header["tensors"], payload), header["outputs"])
    if kind == "done":
        return InferDone(header["id"], _arrays(header["tensors"], payload), header["compute_s"])
    if kind == "failed":
        return TaskFailed(
            header["id"],
            header["status"],
            header["message"],
            header["type"],
            header.get("param"),
            header.get("code"),
        )
    if kind == "event":
        return GenerateEvent(header["id"], header["data"], header["final"])
    if kind == "generate":
        return GenerateTask(header["id"], header["request"])
    if kind == "abort":
        return AbortTask(header["id"])
    if kind == "ready":
        return ReplicaReady(header["pid"], header["load_s"], header["signature"])
    if kind == "shutdown":
        return Shutdown()
    raise ValueError(f"unknown message kind {kind!r}")


def _tensors(arrays: dict[str, np.ndarray]) -> tuple[list[Any], list[bytes | memoryview]]:
    specs: list[Any] = []
    buffers: list[bytes | memoryview] = []
    for name, array in arrays.items():
        if array.dtype.kind in "OUS":
            data = pack_bytes(bytes_items(array))
            specs.append([name, _BYTES, list(array.shape), len(data)])
            buffers.append(data)
            continue
        contiguous = np.ascontiguousarray(array)
        if contiguous.dtype.byteorder == ">":
            contiguous = contiguous.astype(contiguous.dtype.newbyteorder("<"))
        view = contiguous.data.cast("B") if contiguous.size else memoryview(b"")
        specs.append([name, contiguous.dtype.str, list(array.shape), view.nbytes])
        buffers.append(view)
    return specs, buffers


def _arrays(specs: list[Any], payload: bytes | bytearray | memoryview) -> dict[str, np.ndarray]:
    view = memoryview(payload)
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for name, dtype, shape, nbytes in specs:
        chunk = view[offset : offset + nbytes]
        offset += nbytes
        if dtype == _BYTES:
            arrays[name] = object_array(unpack_bytes(name, bytes(chunk)), shape)
        else:
            arrays[name] = np.frombuffer(chunk, dtype=np.dtype(dtype)).reshape(shape)
    return arrays
