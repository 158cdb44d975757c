"""Tensors as JSON documents users write and read: input files of ``modelbay predict``.

An input document is either a V2 request body (``{"inputs": [{"name", "datatype", "shape",
"data"}]}``) or a plain mapping ``{"input name": nested list}`` whose datatypes come from
the model's metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from modelbay.errors import InvalidRequest
from modelbay.protocols import v2
from modelbay.tensors import numpy_dtype

MetadataSource = Callable[[], Mapping[str, Any]]
"""Returns the model's V2 metadata; called only when the document needs datatypes."""


@dataclass
class InputDocument:
    """The arrays of an input document, and the outputs it asks for (``None``: all)."""

    inputs: dict[str, np.ndarray]
    outputs: list[str] | None = None


def parse_input_document(doc: Any, metadata: MetadataSource) -> InputDocument:
    """Arrays of a V2 request body or of a name-to-nested-list mapping (400 if malformed)."""
    if not isinstance(doc, dict) or not doc:
        raise InvalidRequest(
            'the input file must be a JSON object: a V2 request {"inputs": [...]} or '
            '{"input name": [...]}',
            param="inputs",
        )
    if _is_v2_request(doc):
        request = v2.decode_request(orjson.dumps(doc))
        outputs = [o.name for o in request.outputs] if request.outputs else None
        return InputDocument(request.inputs, outputs)
    specs = {str(s["name"]): str(s["datatype"]) for s in metadata().get("inputs", [])}
    arrays = {name: _array(name, value, specs) for name, value in doc.items()}
    return InputDocument(arrays)


def outputs_to_json(outputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Output arrays as nested lists; BYTES elements become strings."""
    return {name: _to_json(array) for name, array in outputs.items()}


def _is_v2_request(doc: dict[str, Any]) -> bool:
    inputs = doc.get("inputs")
    return isinstance(inputs, list) and bool(inputs) and all(isinstance(t, dict) for t in inputs)


def _array(name: str, value: Any, specs: Mapping[str, str]) -> np.ndarray:
    if name not in specs:
        known = ", ".join(f"'{n}'" for n in specs) or "(none)"
        raise InvalidRequest(f"input '{name}' not found; inputs are {known}", param="inputs")
    datatype = specs[name]
    try:
        if datatype == "BYTES":
            return np.char.encode(np.asarray(value, dtype=np.str_), "utf-8").astype(object)
        return np.asarray(value, dtype=numpy_dtype(datatype))
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(
            f"input '{name}' is not a rectangular nested list of {datatype} values: {exc}",
            param="inputs",
        ) from None


def _to_json(array: np.ndarray) -> Any:
    if array.dtype.kind not in ("O", "S"):
        return array.tolist()
    texts = [_text(x) for x in array.ravel()]
    strings = np.empty(len(texts), dtype=object)
    strings[:] = texts
    return strings.reshape(array.shape).tolist()


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
