"""Open Inference Protocol v2 REST answers as types, named as in the protocol's spec.

The routes return these (or, for infer, the codec writes the same shape) and the OpenAPI
schema documents them, so what a client generated from the schema expects is what it gets.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from modelbay.tensors import TensorSpec


class ServerLiveResponse(BaseModel):
    live: bool


class ServerReadyResponse(BaseModel):
    ready: bool


class ServerMetadataResponse(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(TensorSpec):
    """A tensor of the model; ``parameters.accepts`` lists other datatypes an input takes
    and converts without loss (FP32 for an FP64 input ...)."""

    parameters: dict[str, Any] | None = None

    @classmethod
    def of(cls, spec: TensorSpec) -> TensorMetadata:
        widened = spec.widened_from
        return cls(**spec.model_dump(), parameters={"accepts": list(widened)} if widened else None)


class ModelMetadataResponse(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorSpec]


class ModelReadyResponse(BaseModel):
    """``version`` is the one that would answer; ``error`` says why it cannot yet."""

    name: str
    ready: bool
    version: str | None = None
    error: str | None = None


class ResponseOutput(BaseModel):
    """One output tensor: ``data`` inline, or ``parameters.binary_data_size`` bytes after
    the JSON header (binary tensor extension)."""

    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]
