"""Open Inference Protocol v2 REST routes: health, metadata, readiness, infer."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from modelbay import __version__
from modelbay.api.context import AppContext, ContextDep
from modelbay.api.errors import error_responses
from modelbay.api.v2_infer import answer_infer
from modelbay.errors import ModelbayError
from modelbay.protocols import v2
from modelbay.protocols.v2_types import (
    InferResponse,
    ModelMetadataResponse,
    ModelReadyResponse,
    ServerLiveResponse,
    ServerMetadataResponse,
    ServerReadyResponse,
    TensorMetadata,
)
from modelbay.tensors import DATATYPES

router = APIRouter(prefix="/v2", tags=["v2 inference"])

EXTENSIONS = ["binary_tensor_data", "classification"]

_INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "example": {
                    "inputs": [
                        {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}
                    ],
                    "outputs": [{"name": "y", "parameters": {"classification": 2}}],
                },
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        # null is read as absent, for id, parameters and outputs alike
                        "id": {"type": ["string", "null"]},
                        "parameters": {
                            "type": ["object", "null"],
                            "properties": {"binary_data_output": {"type": "boolean"}},
                        },
                        "inputs": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["name", "datatype", "shape"],
                                "properties": {
                                    "name": {"type": "string", "minLength": 1},
                                    "datatype": {"type": "string", "enum": list(DATATYPES)},
                                    "shape": {
                                        "type": "array",
                                        "items": {"type": "integer", "minimum": 0},
                                    },
                                    "parameters": {
                                        "type": ["object", "null"],
                                        "properties": {
                                            "binary_data_size": {"type": "integer", "minimum": 0}
                                        },
                                    },
                                    "data": {"type": "array", "items": {}},
                                },
                            },
                        },
                        "outputs": {
                            "type": ["array", "null"],
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "parameters": {
                                        "type": "object",
                                        "properties": {
                                            "binary_data": {"type": "boolean"},
                                            "classification": {"type": "integer", "minimum": 0},
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
            },
        },
    }
}


_READY = {
    200: {"model": ModelReadyResponse, "description": "Ready: the version that would answer"},
    503: {"model": ModelReadyResponse, "description": "Not ready yet, and why"},
    **error_responses(404),
}
_INFER = {
    200: {
        "model": InferResponse,
        "description": f"JSON outputs, or with binary outputs the JSON header (its length in "
        f"{v2.HEADER_LENGTH}) followed by the tensors' bytes",
        "content": {v2.BINARY_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}},
    },
    **error_responses(400, 404, 413, 422, 429, 503, 504),
}


@router.get("", summary="Server metadata")
def server_metadata() -> ServerMetadataResponse:
    return ServerMetadataResponse(name="modelbay", version=__version__, extensions=EXTENSIONS)


@router.get("/health/live", summary="Server liveness")
def live() -> ServerLiveResponse:
    return ServerLiveResponse(live=True)


@router.get(
    "/health/ready",
    summary="Server readiness: its database answers",
    responses={503: {"model": ServerReadyResponse, "description": "The database does not answer"}},
)
def ready(ctx: ContextDep) -> Response:
    ok = ctx.registry.reachable()
    return JSONResponse(ServerReadyResponse(ready=ok).model_dump(), 200 if ok else 503)


@router.get(
    "/models/{name}",
    summary="Model metadata (deployed or latest version)",
    responses=error_responses(404),
    response_model_exclude_none=True,
)
def model_metadata(ctx: ContextDep, name: str) -> ModelMetadataResponse:
    return _metadata(ctx, name, None)


@router.get(
    "/models/{name}/versions/{version}",
    summary="Model metadata",
    responses=error_responses(404),
    response_model_exclude_none=True,
)
def version_metadata(ctx: ContextDep, name: str, version: str) -> ModelMetadataResponse:
    return _metadata(ctx, name, version)


@router.get(
    "/models/{name}/ready",
    summary="Model readiness (deployed or latest version)",
    response_class=JSONResponse,
    responses=_READY,
)
async def model_ready(ctx: ContextDep, name: str) -> Response:
    return await _ready(ctx, name, None)


@router.get(
    "/models/{name}/versions/{version}/ready",
    summary="Model readiness",
    response_class=JSONResponse,
    responses=_READY,
)
async def version_ready(ctx: ContextDep, name: str, version: str) -> Response:
    return await _ready(ctx, name, version)


@router.post(
    "/models/{name}/infer",
    summary="Inference on the deployment (canary split) or the latest version",
    openapi_extra=_INFER_BODY,
    response_class=JSONResponse,
    responses=_INFER,
)
async def model_infer(ctx: ContextDep, request: Request, name: str) -> Response:
    return await _infer(ctx, request, name, None)


@router.post(
    "/models/{name}/versions/{version}/infer",
    summary="Inference on a version number or alias",
    openapi_extra=_INFER_BODY,
    response_class=JSONResponse,
    responses=_INFER,
)
async def version_infer(ctx: ContextDep, request: Request, name: str, version: str) -> Response:
    return await _infer(ctx, request, name, version)


def _metadata(ctx: AppContext, name: str, ref: str | None) -> ModelMetadataResponse:
    meta = ctx.inference.metadata(name, ref)
    return ModelMetadataResponse(
        name=meta.name,
        versions=meta.versions,
        platform=meta.platform,
        inputs=[TensorMetadata.of(spec) for spec in meta.signature.inputs],
        outputs=meta.signature.outputs,
    )


async def _ready(ctx: AppContext, name: str, ref: str | None) -> Response:
    try:
        version = await ctx.inference.ready(name, ref)
    except ModelbayError as exc:
        if exc.status == 404:
            raise
        answer = ModelReadyResponse(name=name, ready=False, error=exc.message)
        return JSONResponse(answer.model_dump(exclude_none=True), 503)
    answer = ModelReadyResponse(name=name, ready=True, version=str(version))
    return JSONResponse(answer.model_dump(exclude_none=True))


async def _infer(ctx: AppContext, request: Request, name: str, ref: str | None) -> Response:
    # Normally answered by InferFastPath before routing; kept for the schema and in-app use.
    body = await request.body()
    header_length = request.headers.get(v2.HEADER_LENGTH)
    status, headers, content = await answer_infer(ctx.inference, name, ref, body, header_length)
    return Response(
        content, status_code=status, headers={k.decode(): v.decode() for k, v in headers}
    )
