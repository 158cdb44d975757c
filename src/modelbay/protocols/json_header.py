"""A V2 request's JSON parsed with simdjson, numbers of tensor data straight into numpy.

With a general JSON parser every element of a tensor becomes a Python float before numpy
copies it out again; for an image that is most of a request's decoding time. Here each
input's ``data``, when it holds only numbers, is read by simdjson into a buffer of doubles
or 64-bit integers that numpy wraps without a Python object per element. Anything else
(booleans, strings, mixed or malformed data) becomes plain Python values, and the codec's
checks name what is wrong with it exactly as before.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import simdjson

from modelbay.errors import InvalidRequest
from modelbay.tensors import DATATYPE_TO_NUMPY

_BUFFERS: dict[str, tuple[Literal["d", "i", "u"], type[np.generic]]] = {
    "f": ("d", np.float64),
    "i": ("i", np.int64),
    "u": ("u", np.uint64),
}
_PARSE_ERRORS = (ValueError, RuntimeError, TypeError, KeyError)

_REQUEST_FIELDS = ("id", "parameters", "outputs")
_TENSOR_FIELDS = ("name", "datatype", "shape", "parameters")


def parse_request(header: bytes) -> Any:
    """The request as Python values, with numeric ``inputs[*].data`` as numpy arrays."""
    parser = simdjson.Parser()  # one per call: a parser cannot be reused while its
    try:  # objects live, and requests are decoded on several threads
        doc = parser.parse(header)
        if not isinstance(doc, simdjson.Object):
            return _python(doc)
        # Only the protocol's fields are read (a key with escapes may not even be found
        # again by the name the parser lists it under); the rest are ignored, as before.
        present = set(doc.keys())  # one pass: each `key in doc` is a scan of its own
        request = {key: _python(doc[key]) for key in _REQUEST_FIELDS if key in present}
        if "inputs" in present:
            request["inputs"] = _inputs(doc["inputs"])
        return request
    except _PARSE_ERRORS as exc:
        raise InvalidRequest(f"invalid JSON: {exc}") from None


def _inputs(value: Any) -> Any:
    if not isinstance(value, simdjson.Array):
        return _python(value)
    return [_tensor(item) if isinstance(item, simdjson.Object) else _python(item) for item in value]


def _tensor(obj: simdjson.Object) -> dict[str, Any]:
    present = set(obj.keys())
    tensor = {key: _python(obj[key]) for key in _TENSOR_FIELDS if key in present}
    if "data" in present:
        tensor["data"] = _data(obj["data"], tensor.get("datatype"))
    return tensor


def _data(value: Any, datatype: Any) -> Any:
    dtype = DATATYPE_TO_NUMPY.get(datatype) if isinstance(datatype, str) else None
    if dtype is None or dtype.kind not in _BUFFERS or not isinstance(value, simdjson.Array):
        return _python(value)
    of_type, element = _BUFFERS[dtype.kind]
    try:
        return np.frombuffer(value.as_buffer(of_type=of_type), dtype=element)
    except _PARSE_ERRORS:  # not all numbers of that kind: the codec names the problem
        return _python(value)


def _python(value: Any) -> Any:
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value
