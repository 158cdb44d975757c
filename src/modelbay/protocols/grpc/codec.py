"""Open Inference Protocol v2 over gRPC: ``ModelInferRequest`` / ``ModelInferResponse`` codec.

Inputs arrive as typed ``contents`` or as ``raw_input_contents`` (little-endian elements,
BYTES as 4-byte little-endian length-prefixed items, as in the REST binary extension).
Outputs always leave as ``raw_output_contents``: what Triton sends and what
``tritonclient.grpc``'s ``as_numpy`` reads. Pure functions: no server, no model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from modelbay.errors import InvalidRequest
from modelbay.protocols.grpc import grpc_predict_v2_pb2 as pb
from modelbay.protocols.v2 import InferRequest, RequestedOutput, classify
from modelbay.tensors import (
    bytes_items,
    datatype_of,
    numpy_dtype,
    object_array,
    pack_bytes,
    unpack_bytes,
)

ParameterValue = bool | int | float | str

# The typed contents field of each datatype; 8- and 16-bit integers travel widened to 32.
# FP16 has no field: it can only be sent raw.
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_SHARED_MEMORY = "shared_memory_region"


def decode_request(request: pb.ModelInferRequest) -> InferRequest:
    """Decode a gRPC infer request; errors name the offending tensor or field (400)."""
    if not request.inputs:
        raise InvalidRequest("'inputs' must list at least one tensor", param="inputs")
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidRequest(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; "
            "give one per input, in order",
            param="raw_input_contents",
        )
    inputs: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        if not tensor.name:
            raise InvalidRequest(f"inputs[{i}]: 'name' must not be empty", param="inputs")
        if tensor.name in inputs:
            raise InvalidRequest(f"input '{tensor.name}' is given twice", param="inputs")
        inputs[tensor.name] = _decode_input(tensor, i, raw[i] if raw else None)
    return InferRequest(
        inputs=inputs,
        outputs=_requested_outputs(request.outputs) or None,
        id=request.id or None,
        parameters=decode_parameters(request.parameters),
    )


def encode_response(
    *,
    model_name: str,
    model_version: str,
    outputs: dict[str, np.ndarray],
    request: InferRequest,
    labels: list[str] | None = None,
) -> pb.ModelInferResponse:
    """Encode the outputs the request asked for (all, in order, if it named none)."""
    response = pb.ModelInferResponse(
        model_name=model_name, model_version=model_version, id=request.id or ""
    )
    for out in request.outputs or [RequestedOutput(name) for name in outputs]:
        array = outputs[out.name]
        if out.classification:
            array = classify(array, out.classification, labels)
        datatype = datatype_of(array)
        response.outputs.add(name=out.name, datatype=datatype, shape=array.shape)
        response.raw_output_contents.append(_raw_bytes(array, datatype))
    return response


def decode_parameters(parameters: Mapping[str, pb.InferParameter]) -> dict[str, ParameterValue]:
    """Request, tensor or output parameters as plain values; unset ones are left out."""
    result: dict[str, ParameterValue] = {}
    for key, param in parameters.items():
        kind = param.WhichOneof("parameter_choice")
        if kind is not None:
            result[key] = getattr(param, kind)
    return result


def _decode_input(
    tensor: pb.ModelInferRequest.InferInputTensor, index: int, raw: bytes | None
) -> np.ndarray:
    name, datatype = tensor.name, tensor.datatype
    try:
        dtype = numpy_dtype(datatype)
    except InvalidRequest as exc:
        raise InvalidRequest(f"input '{name}': {exc.message}", param="datatype") from None
    shape = list(tensor.shape)
    if any(d < 0 for d in shape):
        raise InvalidRequest(
            f"input '{name}': shape {shape} has a negative dimension", param="shape"
        )
    if _SHARED_MEMORY in tensor.parameters:
        raise InvalidRequest(f"input '{name}': shared memory is not supported", param=name)
    filled = [field.name for field, _ in tensor.contents.ListFields()]
    if raw is None:
        return _from_contents(name, datatype, dtype, shape, tensor.contents, filled)
    if filled:
        raise InvalidRequest(
            f"input '{name}': data is in both contents and raw_input_contents; give one",
            param="contents",
        )
    return _from_raw(name, datatype, dtype, shape, raw, index)


def _from_contents(
    name: str,
    datatype: str,
    dtype: np.dtype[Any],
    shape: list[int],
    contents: pb.InferTensorContents,
    filled: list[str],
) -> np.ndarray:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidRequest(
            f"input '{name}': {datatype} has no typed contents field; "
            "send it in raw_input_contents",
            param="contents",
        )
    misplaced = [f for f in filled if f != field]
    if misplaced:
        raise InvalidRequest(
            f"input '{name}': {datatype} data belongs in contents.{field}, "
            f"got {', '.join(misplaced)}",
            param="contents",
        )
    values: Sequence[Any] = getattr(contents, field)
    count = math.prod(shape)
    if len(values) != count:
        raise InvalidRequest(
            f"input '{name}': shape {shape} needs {count} elements, "
            f"contents.{field} has {len(values)}",
            param="shape",
        )
    if datatype == "BYTES":
        return object_array(list(values), shape)
    try:
        return np.array(list(values), dtype=dtype).reshape(shape)
    except OverflowError:
        raise InvalidRequest(
            f"input '{name}': contents.{field} holds a value out of range for {datatype}",
            param="contents",
        ) from None


def _from_raw(
    name: str, datatype: str, dtype: np.dtype[Any], shape: list[int], raw: bytes, index: int
) -> np.ndarray:
    count = math.prod(shape)
    if datatype == "BYTES":
        items = unpack_bytes(name, raw)
        if len(items) != count:
            raise InvalidRequest(
                f"input '{name}': shape {shape} needs {count} elements, "
                f"raw_input_contents[{index}] has {len(items)}",
                param="shape",
            )
        return object_array(items, shape)
    if len(raw) != count * dtype.itemsize:
        raise InvalidRequest(
            f"input '{name}': shape {shape} of {datatype} needs {count * dtype.itemsize} "
            f"bytes, raw_input_contents[{index}] has {len(raw)}",
            param="shape",
        )
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(shape)


def _requested_outputs(
    outputs: Iterable[pb.ModelInferRequest.InferRequestedOutputTensor],
) -> list[RequestedOutput]:
    result = []
    for i, out in enumerate(outputs):
        if not out.name:
            raise InvalidRequest(f"outputs[{i}]: 'name' must not be empty", param="outputs")
        params = decode_parameters(out.parameters)
        if _SHARED_MEMORY in params:
            raise InvalidRequest(f"output '{out.name}': shared memory is not supported")
        k = params.get("classification", 0)
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise InvalidRequest(
                f"output '{out.name}': classification must be an integer >= 0, got {k!r}",
                param="classification",
            )
        result.append(RequestedOutput(out.name, classification=k))
    return result


def _raw_bytes(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        return pack_bytes(bytes_items(array))
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
