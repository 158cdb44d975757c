"""Open Inference Protocol v2 (KServe/Triton) over REST: wire types and the codec.

Covers JSON tensors and the binary tensor extension (``Inference-Header-Content-Length``
plus ``binary_data_size`` / ``binary_data`` parameters) in both directions, and Triton's
classification extension. Pure functions: no web framework, no model; the server and the
Python SDK both use them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from modelbay.errors import InvalidRequest
from modelbay.protocols.json_header import parse_request
from modelbay.tensors import (
    bytes_items,
    datatype_of,
    numpy_dtype,
    object_array,
    pack_bytes,
    unpack_bytes,
)

HEADER_LENGTH = "Inference-Header-Content-Length"
JSON_CONTENT_TYPE = "application/json"
BINARY_CONTENT_TYPE = "application/octet-stream"


@dataclass
class RequestedOutput:
    """One entry of a request's ``outputs`` list."""

    name: str
    binary: bool | None = None
    classification: int = 0


@dataclass
class InferRequest:
    """A decoded inference request: named arrays plus what the client asked for back."""

    inputs: dict[str, np.ndarray]
    outputs: list[RequestedOutput] | None = None
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def binary_output_default(self) -> bool:
        return bool(self.parameters.get("binary_data_output", False))


def decode_request(body: bytes, header_length: int | None = None) -> InferRequest:
    """Decode a V2 infer request body; errors name the offending field (400)."""
    header, rest = _split(body, header_length)
    doc = _object(parse_request(header), "request")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidRequest("'inputs' must be a non-empty list of tensors", param="inputs")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for i, raw in enumerate(raw_inputs):
        tensor = _object(raw, f"inputs[{i}]")
        name, array, used = _decode_tensor(tensor, f"inputs[{i}]", rest, offset)
        if name in inputs:
            raise InvalidRequest(f"input '{name}' is given twice", param="inputs")
        inputs[name] = array
        offset += used
    if offset != len(rest):
        raise InvalidRequest(
            f"binary body has {len(rest) - offset} bytes not claimed by any input's "
            "binary_data_size",
            param="inputs",
        )
    parameters = _parameters(doc.get("parameters"), "parameters")
    if not isinstance(parameters.get("binary_data_output", False), bool):
        raise InvalidRequest(
            "parameters.binary_data_output must be a boolean", param="binary_data_output"
        )
    return InferRequest(
        inputs=inputs,
        outputs=_requested_outputs(doc.get("outputs")),
        id=_optional_str(doc.get("id"), "id"),
        parameters=parameters,
    )


def encode_response(
    *,
    model_name: str,
    model_version: str,
    outputs: dict[str, np.ndarray],
    request: InferRequest,
    labels: list[str] | None = None,
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """Encode the outputs the request asked for; returns (body, header length or None)."""
    wanted = request.outputs or [RequestedOutput(name) for name in outputs]
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for out in wanted:
        array = outputs[out.name]
        if out.classification:
            array = classify(array, out.classification, labels)
        binary = out.binary if out.binary is not None else request.binary_output_default
        entry, chunk = _encode_tensor(out.name, array, binary)
        entries.append(entry)
        if chunk is not None:
            chunks.append(chunk)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        doc["id"] = request.id
    if parameters:
        doc["parameters"] = parameters
    doc["outputs"] = entries
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


def encode_request(
    inputs: dict[str, np.ndarray],
    outputs: list[str] | None = None,
    *,
    binary: bool = True,
    request_id: str | None = None,
) -> tuple[bytes, int | None]:
    """Client side: encode arrays as a V2 request; binary tensors unless ``binary`` is False."""
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, value in inputs.items():
        entry, chunk = _encode_tensor(name, np.asarray(value), binary)
        entries.append(entry)
        if chunk is not None:
            chunks.append(chunk)
    doc: dict[str, Any] = {"inputs": entries}
    if request_id is not None:
        doc["id"] = request_id
    if outputs is not None:
        doc["outputs"] = [{"name": n, "parameters": {"binary_data": binary}} for n in outputs]
    else:
        doc["parameters"] = {"binary_data_output": binary}
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


def decode_response(body: bytes, header_length: int | None = None) -> dict[str, np.ndarray]:
    """Client side: decode a V2 infer response into named arrays."""
    header, rest = _split(body, header_length)
    doc = _object(_loads(header), "response")
    if "error" in doc:
        raise InvalidRequest(str(doc["error"]))
    result: dict[str, np.ndarray] = {}
    offset = 0
    for i, raw in enumerate(doc.get("outputs") or []):
        name, array, used = _decode_tensor(_object(raw, f"outputs[{i}]"), "output", rest, offset)
        result[name] = array
        offset += used
    return result


def classify(array: np.ndarray, k: int, labels: list[str] | None) -> np.ndarray:
    """Triton classification extension: top-k of the last axis as "score:index[:label]"."""
    if array.ndim == 0 or array.dtype.kind not in "fiub":
        raise InvalidRequest("classification needs a numeric output with a class axis")
    k = min(k, array.shape[-1])
    scores = array.reshape(-1, array.shape[-1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    rows = []
    for row, idx in zip(scores, top, strict=True):
        for j in idx:
            label = f":{labels[j]}" if labels is not None and j < len(labels) else ""
            rows.append(f"{row[j]:g}:{j}{label}".encode())
    return np.array(rows, dtype=object).reshape(*array.shape[:-1], k)


def _decode_tensor(
    tensor: dict[str, Any], where: str, rest: bytes, offset: int
) -> tuple[str, np.ndarray, int]:
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"{where}: 'name' must be a non-empty string", param="name")
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str):
        raise InvalidRequest(f"tensor '{name}': 'datatype' must be a string", param="datatype")
    dtype = numpy_dtype(datatype)
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidRequest(
            f"tensor '{name}': 'shape' must be a list of non-negative integers", param="shape"
        )
    params = _parameters(tensor.get("parameters"), f"tensor '{name}' parameters")
    size = params.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(rest):
            raise InvalidRequest(
                f"tensor '{name}': binary_data_size {size!r} does not fit the "
                f"{len(rest) - offset} bytes left in the body",
                param="binary_data_size",
            )
        chunk = rest[offset : offset + size]
        return name, _from_binary(name, datatype, dtype, shape, chunk), size
    if "data" not in tensor:
        raise InvalidRequest(f"tensor '{name}': 'data' is missing", param="data")
    return name, _from_json(name, datatype, dtype, shape, tensor["data"]), 0


def _from_json(
    name: str, datatype: str, dtype: np.dtype[Any], shape: list[int], data: Any
) -> np.ndarray:
    count = math.prod(shape)
    if datatype == "BYTES":
        flat = _flatten(data, name)
        if not all(isinstance(x, str) for x in flat):
            raise InvalidRequest(f"tensor '{name}': BYTES data must be strings", param="data")
        array = np.empty(len(flat), dtype=object)
        array[:] = [x.encode() for x in flat]
    else:
        try:
            raw = data if isinstance(data, np.ndarray) else np.asarray(data)
        except ValueError:
            raise InvalidRequest(
                f"tensor '{name}': data is ragged; give a flat list or equal-length rows",
                param="data",
            ) from None
        if raw.size and not _compatible(raw.dtype, dtype):
            raise InvalidRequest(f"tensor '{name}': data are not {datatype} values", param="data")
        if raw.size and not _within_range(raw, dtype):
            raise InvalidRequest(
                f"tensor '{name}': data has values outside the range of {datatype}",
                param="data",
            )
        array = raw.astype(dtype, copy=False)
        if not array.flags.writeable:  # straight from the parser's buffer
            array = array.copy()
    if array.size != count:
        raise InvalidRequest(
            f"tensor '{name}': shape {shape} needs {count} elements, data has {array.size}",
            param="shape",
        )
    return array.reshape(shape)


def _compatible(got: np.dtype[Any], want: np.dtype[Any]) -> bool:
    if want.kind == "b":
        return got.kind == "b"
    if want.kind in "iu":
        return got.kind in "iu"
    return got.kind in "iuf"


def _within_range(raw: np.ndarray, want: np.dtype[Any]) -> bool:
    """Whether every value of ``raw`` fits ``want`` (a cast would wrap integers and turn
    large floats into infinity, silently)."""
    if want.kind in "iu" and raw.dtype.kind in "iu":
        info = np.iinfo(want)
        return bool(raw.min() >= info.min and raw.max() <= info.max)
    if want.kind == "f" and raw.dtype.itemsize > want.itemsize:
        limit = np.finfo(want).max  # JSON has no infinities: every value is finite
        return bool(raw.min() >= -limit and raw.max() <= limit)
    return True


def _from_binary(
    name: str, datatype: str, dtype: np.dtype[Any], shape: list[int], chunk: bytes
) -> np.ndarray:
    count = math.prod(shape)
    if datatype == "BYTES":
        items = unpack_bytes(name, chunk)
        if len(items) != count:
            raise InvalidRequest(
                f"tensor '{name}': shape {shape} needs {count} elements, data has {len(items)}",
                param="shape",
            )
        return object_array(items, shape)
    if len(chunk) != count * dtype.itemsize:
        raise InvalidRequest(
            f"tensor '{name}': shape {shape} of {datatype} needs {count * dtype.itemsize} "
            f"bytes, binary_data_size is {len(chunk)}",
            param="binary_data_size",
        )
    return np.frombuffer(chunk, dtype=dtype.newbyteorder("<")).reshape(shape)


def _encode_tensor(
    name: str, array: np.ndarray, binary: bool
) -> tuple[dict[str, Any], bytes | None]:
    datatype = datatype_of(array)
    entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
    if datatype == "BYTES":
        items = bytes_items(array)
        if binary:
            chunk = pack_bytes(items)
            entry["parameters"] = {"binary_data_size": len(chunk)}
            return entry, chunk
        entry["data"] = [x.decode("utf-8", errors="replace") for x in items]
        return entry, None
    flat = np.ascontiguousarray(array).ravel()
    if binary:
        chunk = flat.astype(flat.dtype.newbyteorder("<"), copy=False).tobytes()
        entry["parameters"] = {"binary_data_size": len(chunk)}
        return entry, chunk
    entry["data"] = flat
    return entry, None


def _requested_outputs(raw: Any) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InvalidRequest("'outputs' must be a list", param="outputs")
    result = []
    for i, item in enumerate(raw):
        out = _object(item, f"outputs[{i}]")
        name = out.get("name")
        if not isinstance(name, str):
            raise InvalidRequest(f"outputs[{i}]: 'name' must be a string", param="outputs")
        params = _parameters(out.get("parameters"), f"output '{name}' parameters")
        binary = params.get("binary_data")
        k = params.get("classification", 0)
        if binary is not None and not isinstance(binary, bool):
            raise InvalidRequest(f"output '{name}': binary_data must be a boolean")
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise InvalidRequest(
                f"output '{name}': classification must be an integer >= 0, got {k!r}",
                param="classification",
            )
        result.append(RequestedOutput(name, binary, k))
    return result


def _split(body: bytes, header_length: int | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    if header_length < 0 or header_length > len(body):
        raise InvalidRequest(
            f"{HEADER_LENGTH} is {header_length} but the body has {len(body)} bytes",
            param=HEADER_LENGTH,
        )
    view = memoryview(body)
    return bytes(view[:header_length]), bytes(view[header_length:])


def _loads(data: bytes) -> Any:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"invalid JSON: {exc}") from None
    return doc


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where} must be a JSON object", param=where)
    return value


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    return _object(value, where)


def _optional_str(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidRequest(f"'{where}' must be a string", param=where)


def _flatten(data: Any, name: str) -> list[Any]:
    if not isinstance(data, list):
        raise InvalidRequest(f"tensor '{name}': 'data' must be a list", param="data")
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for x in stack[-1]:
            if isinstance(x, list):
                stack.append(iter(x))
                break
            flat.append(x)
        else:
            stack.pop()
    return flat
