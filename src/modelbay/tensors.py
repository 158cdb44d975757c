"""Tensor specifications and signatures, shared by runtimes, registry and protocols.

Datatypes use the Open Inference Protocol v2 names (``FP32``, ``INT64``, ``BYTES`` ...);
shapes use ``-1`` for a variable dimension.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, field_validator

from modelbay.errors import InvalidArtifact, InvalidRequest

DATATYPE_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}
NUMPY_TO_DATATYPE: dict[np.dtype[Any], str] = {v: k for k, v in DATATYPE_TO_NUMPY.items()}
DATATYPES = tuple(DATATYPE_TO_NUMPY)


LOSSLESS_FROM: dict[str, tuple[str, ...]] = {
    "FP64": ("FP32", "FP16", "INT32", "INT16", "INT8", "UINT32", "UINT16", "UINT8"),
    "FP32": ("FP16", "INT16", "INT8", "UINT16", "UINT8"),
    "INT64": ("INT32", "INT16", "INT8", "UINT32", "UINT16", "UINT8"),
    "INT32": ("INT16", "INT8", "UINT16", "UINT8"),
    "INT16": ("INT8", "UINT8"),
    "UINT64": ("UINT32", "UINT16", "UINT8"),
    "UINT32": ("UINT16", "UINT8"),
    "UINT16": ("UINT8",),
}
"""Datatypes an input of each datatype also accepts, because every value converts exactly
(FP32 into FP64, INT32 into INT64 ...); what could lose information (INT64 into FP64,
FP64 into FP32) is refused."""


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype holding a V2 datatype; BYTES is an object array of ``bytes``."""
    try:
        return DATATYPE_TO_NUMPY[datatype]
    except KeyError:
        raise InvalidRequest(
            f"unsupported datatype '{datatype}'; supported: {', '.join(DATATYPES)}",
            param="datatype",
        ) from None


def datatype_of(array: np.ndarray) -> str:
    """The V2 datatype of a numpy array (strings and bytes are BYTES)."""
    kind = array.dtype.kind
    if kind in ("U", "S", "O"):
        return "BYTES"
    try:
        return NUMPY_TO_DATATYPE[array.dtype]
    except KeyError:
        raise InvalidArtifact(f"numpy dtype {array.dtype} has no V2 datatype") from None


class TensorSpec(BaseModel):
    """Name, datatype and shape (``-1`` = any size) of one input or output."""

    name: str = Field(min_length=1)
    datatype: str
    shape: list[int]

    @field_validator("datatype")
    @classmethod
    def _known_datatype(cls, value: str) -> str:
        if value not in DATATYPE_TO_NUMPY:
            raise ValueError(f"unknown datatype '{value}'; valid: {', '.join(DATATYPES)}")
        return value

    @field_validator("shape")
    @classmethod
    def _valid_dims(cls, value: list[int]) -> list[int]:
        if any(d < -1 for d in value):
            raise ValueError("shape dimensions must be >= 0, or -1 for a variable dimension")
        return value

    @property
    def widened_from(self) -> tuple[str, ...]:
        """Other datatypes this tensor accepts, converted without loss."""
        return LOSSLESS_FROM.get(self.datatype, ())

    def accepts_shape(self, shape: tuple[int, ...] | list[int]) -> bool:
        if len(shape) != len(self.shape):
            return False
        for want, got in zip(self.shape, shape, strict=True):
            if want != -1 and want != got:
                return False
        return True


def _check_rows(inputs: Mapping[str, np.ndarray]) -> None:
    rows: dict[str, int] = {}
    for name, array in inputs.items():
        if array.ndim == 0:
            raise InvalidRequest(
                f"input '{name}' is a scalar; a batched model needs a first (row) dimension",
                param="inputs",
            )
        rows[name] = array.shape[0]
    if len(set(rows.values())) > 1:
        counts = ", ".join(f"'{name}' has {n}" for name, n in rows.items())
        raise InvalidRequest(
            f"inputs disagree on their number of rows ({counts}); every input needs the "
            "same first dimension",
            param="inputs",
        )


class Signature(BaseModel):
    """Inputs and outputs of a model."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @field_validator("inputs", "outputs")
    @classmethod
    def _unique_names(cls, value: list[TensorSpec]) -> list[TensorSpec]:
        names = [t.name for t in value]
        if len(names) != len(set(names)):
            raise ValueError(f"tensor names must be unique, got {names}")
        return value

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise InvalidRequest(
            f"input '{name}' not found; inputs are {_quoted(t.name for t in self.inputs)}",
            param="inputs",
        )

    def output(self, name: str) -> TensorSpec:
        for spec in self.outputs:
            if spec.name == name:
                return spec
        raise InvalidRequest(
            f"output '{name}' not found; outputs are {_quoted(t.name for t in self.outputs)}",
            param="outputs",
        )

    def check_inputs(
        self, inputs: Mapping[str, np.ndarray], *, batched: bool = False
    ) -> dict[str, np.ndarray]:
        """Names, datatypes and shapes of request inputs against this signature (400);
        returns the inputs, each widened to its declared datatype where that loses nothing.
        ``batched``: requests are stacked along the first axis, so every input needs one,
        of one length."""
        conformed: dict[str, np.ndarray] = {}
        for name, array in inputs.items():
            spec = self.input(name)
            got = datatype_of(array)
            if got != spec.datatype:
                if got not in spec.widened_from:
                    also = f" (or {', '.join(spec.widened_from)})" if spec.widened_from else ""
                    raise InvalidRequest(
                        f"input '{name}' has datatype {got}; the model expects "
                        f"{spec.datatype}{also}",
                        param="inputs",
                    )
                array = array.astype(DATATYPE_TO_NUMPY[spec.datatype])
            conformed[name] = array
            if not spec.accepts_shape(array.shape):
                raise InvalidRequest(
                    f"input '{name}' has shape {list(array.shape)}; the model expects "
                    f"{spec.shape} (-1: any size)",
                    param="inputs",
                )
        missing = [s.name for s in self.inputs if s.name not in inputs]
        if missing:
            raise InvalidRequest(
                f"missing input(s) {_quoted(missing)}; the model needs "
                f"{_quoted(s.name for s in self.inputs)}",
                param="inputs",
            )
        if batched:
            _check_rows(conformed)
        return conformed

    @property
    def batchable(self) -> bool:
        """Requests can be stacked: every input and output has a first, variable axis."""
        return all(s.shape[:1] == [-1] for s in (*self.inputs, *self.outputs))

    def check_outputs(self, names: Iterable[str]) -> None:
        """Requested output names must exist (400 naming the valid ones)."""
        for name in names:
            self.output(name)

    @classmethod
    def parse(cls, data: Mapping[str, Any] | str | bytes) -> Signature:
        """Parse a signature given by a user; errors are ``InvalidArtifact`` (422)."""
        try:
            if isinstance(data, str | bytes):
                return cls.model_validate_json(data)
            return cls.model_validate(data)
        except ValueError as exc:
            raise InvalidArtifact(f"invalid signature: {exc}", param="signature") from None


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f"'{n}'" for n in names) or "(none)"


def bytes_items(array: np.ndarray) -> list[bytes]:
    """The elements of a BYTES tensor as ``bytes`` (strings are UTF-8 encoded)."""
    return [x if isinstance(x, bytes) else str(x).encode() for x in array.ravel()]


def pack_bytes(items: Iterable[bytes]) -> bytes:
    """BYTES elements on the wire: each a 4-byte little-endian length, then its bytes."""
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


def unpack_bytes(name: str, chunk: bytes) -> list[bytes]:
    """The elements of a packed BYTES tensor; ``InvalidRequest`` if it is truncated."""
    items: list[bytes] = []
    pos = 0
    while pos < len(chunk):
        if pos + 4 > len(chunk):
            raise InvalidRequest(f"tensor '{name}': truncated BYTES element", param="data")
        (length,) = struct.unpack_from("<I", chunk, pos)
        pos += 4
        if pos + length > len(chunk):
            raise InvalidRequest(f"tensor '{name}': truncated BYTES element", param="data")
        items.append(bytes(chunk[pos : pos + length]))
        pos += length
    return items


def object_array(items: list[bytes], shape: Iterable[int]) -> np.ndarray:
    """A BYTES tensor (numpy object array) of ``items`` in ``shape``."""
    # Assigning into an object array keeps each item whole (np.array would make 'S').
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array.reshape(tuple(shape))
