"""Open Inference Protocol v2 REST routes: health, metadata, readiness, infer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from modelbay import __version__
from modelbay.api.context import AppContext, ContextDep
from modelbay.api.v2_infer import answer_infer
from modelbay.errors import ModelbayError
from modelbay.protocols import v2
from modelbay.tensors import DATATYPES

router = APIRouter(prefix="/v2", tags=["v2 inference"])

EXTENSIONS = ["binary_tensor_data", "classification"]

_INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "parameters": {"type": "object"},
                        "inputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name", "datatype", "shape"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "datatype": {"type": "string", "enum": list(DATATYPES)},
                                    "shape": {"type": "array", "items": {"type": "integer"}},
                                    "parameters": {"type": "object"},
                                    "data": {"type": "array", "items": {}},
                                },
                            },
                        },
                        "outputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "parameters": {"type": "object"},
                                },
                            },
                        },
                    },
                }
            },
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
            },
        },
    }
}


@router.get("", summary="Server metadata")
def server_metadata() -> dict[str, Any]:
    return {"name": "modelbay", "version": __version__, "extensions": EXTENSIONS}


@router.get("/health/live", summary="Server liveness")
def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", summary="Server readiness")
def ready(ctx: ContextDep) -> dict[str, bool]:
    ctx.registry.list_models()  # the registry answers: the server can serve
    return {"ready": True}


@router.get("/models/{name}", summary="Model metadata (deployed or latest version)")
def model_metadata(ctx: ContextDep, name: str) -> dict[str, Any]:
    return _metadata(ctx, name, None)


@router.get("/models/{name}/versions/{version}", summary="Model metadata")
def version_metadata(ctx: ContextDep, name: str, version: str) -> dict[str, Any]:
    return _metadata(ctx, name, version)


@router.get("/models/{name}/ready", summary="Model readiness (deployed or latest version)")
async def model_ready(ctx: ContextDep, name: str) -> Response:
    return await _ready(ctx, name, None)


@router.get("/models/{name}/versions/{version}/ready", summary="Model readiness")
async def version_ready(ctx: ContextDep, name: str, version: str) -> Response:
    return await _ready(ctx, name, version)


@router.post(
    "/models/{name}/infer",
    summary="Inference on the deployment (canary split) or the latest version",
    openapi_extra=_INFER_BODY,
)
async def model_infer(ctx: ContextDep, request: Request, name: str) -> Response:
    return await _infer(ctx, request, name, None)


@router.post(
    "/models/{name}/versions/{version}/infer",
    summary="Inference on a version number or alias",
    openapi_extra=_INFER_BODY,
)
async def version_infer(ctx: ContextDep, request: Request, name: str, version: str) -> Response:
    return await _infer(ctx, request, name, version)


def _metadata(ctx: AppContext, name: str, ref: str | None) -> dict[str, Any]:
    meta = ctx.inference.metadata(name, ref)
    return {
        "name": meta.name,
        "versions": meta.versions,
        "platform": meta.platform,
        "inputs": [t.model_dump() for t in meta.signature.inputs],
        "outputs": [t.model_dump() for t in meta.signature.outputs],
    }


async def _ready(ctx: AppContext, name: str, ref: str | None) -> Response:
    try:
        version = await ctx.inference.ready(name, ref)
    except ModelbayError as exc:
        if exc.status == 404:
            raise
        return JSONResponse({"name": name, "ready": False, "error": exc.message}, 503)
    return JSONResponse({"name": name, "version": str(version), "ready": True})


async def _infer(ctx: AppContext, request: Request, name: str, ref: str | None) -> Response:
    # Normally answered by InferFastPath before routing; kept for the schema and in-app use.
    body = await request.body()
    header_length = request.headers.get(v2.HEADER_LENGTH)
    status, headers, content = await answer_infer(ctx.inference, name, ref, body, header_length)
    return Response(
        content, status_code=status, headers={k.decode(): v.decode() for k, v in headers}
    )
