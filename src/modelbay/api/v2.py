"""Open Inference Protocol v2 REST routes: health, metadata, readiness, infer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from modelbay import __version__
from modelbay.api.context import AppContext, ContextDep
from modelbay.errors import InvalidRequest, ModelbayError
from modelbay.protocols import v2
from modelbay.registry import LATEST
from modelbay.tensors import DATATYPES

router = APIRouter(prefix="/v2", tags=["v2 inference"])

EXTENSIONS = ["binary_tensor_data", "classification"]
_DECODE_IN_THREAD_BYTES = 64 * 1024

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


@router.get("/models/{name}", summary="Model metadata (latest version)")
def model_metadata(ctx: ContextDep, name: str) -> dict[str, Any]:
    return _metadata(ctx, name, LATEST)


@router.get("/models/{name}/versions/{version}", summary="Model metadata")
def version_metadata(ctx: ContextDep, name: str, version: str) -> dict[str, Any]:
    return _metadata(ctx, name, version)


@router.get("/models/{name}/ready", summary="Model readiness (latest version)")
async def model_ready(ctx: ContextDep, name: str) -> Response:
    return await _ready(ctx, name, LATEST)


@router.get("/models/{name}/versions/{version}/ready", summary="Model readiness")
async def version_ready(ctx: ContextDep, name: str, version: str) -> Response:
    return await _ready(ctx, name, version)


@router.post(
    "/models/{name}/infer", summary="Inference (latest version)", openapi_extra=_INFER_BODY
)
async def model_infer(ctx: ContextDep, request: Request, name: str) -> Response:
    return await _infer(ctx, request, name, LATEST)


@router.post(
    "/models/{name}/versions/{version}/infer",
    summary="Inference on a version number or alias",
    openapi_extra=_INFER_BODY,
)
async def version_infer(ctx: ContextDep, request: Request, name: str, version: str) -> Response:
    return await _infer(ctx, request, name, version)


def _metadata(ctx: AppContext, name: str, ref: str) -> dict[str, Any]:
    record = ctx.inference.version(name, ref)
    versions = [str(v.version) for v in ctx.registry.list_versions(name)]
    sig = record.signature
    return {
        "name": name,
        "versions": versions,
        "platform": _platform(record.format),
        "inputs": [t.model_dump() for t in sig.inputs],
        "outputs": [t.model_dump() for t in sig.outputs],
    }


def _platform(fmt: str) -> str:
    from modelbay.runtimes import runtime_class

    return runtime_class(fmt).platform


async def _ready(ctx: AppContext, name: str, ref: str) -> Response:
    try:
        loaded = await ctx.inference.loaded(name, ref)
    except ModelbayError as exc:
        if exc.status == 404:
            raise
        return JSONResponse({"name": name, "ready": False, "error": exc.message}, 503)
    return JSONResponse({"name": name, "version": str(loaded.version), "ready": True})


async def _infer(ctx: AppContext, request: Request, name: str, ref: str) -> Response:
    header_length = _header_length(request)
    body = await request.body()
    if len(body) > _DECODE_IN_THREAD_BYTES:
        req = await run_in_threadpool(v2.decode_request, body, header_length)
    else:
        req = v2.decode_request(body, header_length)
    wanted = [o.name for o in req.outputs] if req.outputs else None
    result = await ctx.inference.infer(name, ref, req.inputs, wanted)
    content, json_length = v2.encode_response(
        model_name=name,
        model_version=str(result.version),
        outputs=result.outputs,
        request=req,
        labels=result.labels,
    )
    if json_length is None:
        return Response(content, media_type=v2.JSON_CONTENT_TYPE)
    return Response(
        content,
        media_type=v2.BINARY_CONTENT_TYPE,
        headers={v2.HEADER_LENGTH: str(json_length)},
    )


def _header_length(request: Request) -> int | None:
    raw = request.headers.get(v2.HEADER_LENGTH)
    if raw is None:
        return None
    if not raw.strip().isdigit():
        raise InvalidRequest(f"{v2.HEADER_LENGTH} must be a non-negative integer, got '{raw}'")
    return int(raw)
