"""Management REST API under /api/v1: models, versions (upload, download), aliases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Request, Response, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from modelbay.api.audit import note_target
from modelbay.api.auth import PrincipalDep
from modelbay.api.context import ContextDep
from modelbay.api.errors import error_responses
from modelbay.api.fields import (
    DESCRIPTION_LENGTH,
    NO_NUL,
    Description,
    Labels,
    Name,
    Tags,
    Task,
    TenantName,
    VersionNumber,
)
from modelbay.archives import safe_relative_path
from modelbay.catalog import PushRequest
from modelbay.errors import InvalidRequest, NotFound
from modelbay.frontends.epochs import Domain
from modelbay.registry import ModelRecord, VersionRecord
from modelbay.registry.repository import check_alias_name
from modelbay.tensors import Signature

router = APIRouter(prefix="/api/v1", tags=["management"])

UPLOAD_SUFFIX = "/versions"


class ModelCreate(BaseModel):
    """Fields of a new model."""

    name: Name = Field(description="Unique name: letters, digits, '.', '_', '-'")
    description: Description = ""
    task: Task | None = Field(default=None, description="e.g. classification, regression")
    labels: Labels | None = Field(default=None, description="Class names, by index")
    tags: Tags = {}


class ModelUpdate(BaseModel):
    """Fields of a model that can change; omitted fields stay as they are, null clears one."""

    description: Description | None = None
    task: Task | None = None
    labels: Labels | None = None
    tags: Tags | None = None


class ModelList(BaseModel):
    models: list[ModelRecord]


class VersionList(BaseModel):
    versions: list[VersionRecord]


class AliasTarget(BaseModel):
    model_config = ConfigDict(strict=True)  # `true` is no version number

    version: VersionNumber = Field(description="Version number the alias points to")


class AliasList(BaseModel):
    aliases: dict[str, int]


class ModelAccess(BaseModel):
    """Who besides the owning tenant may see a model and infer with it."""

    model_config = ConfigDict(strict=True)

    visibility: Literal["private", "public"] = Field(
        description="public: every tenant may read its metadata and infer"
    )
    shared_with: list[TenantName] = Field(
        default=[], max_length=1000, description="Tenants given the same access"
    )


@router.get("/models", summary="List the models the caller may see")
def list_models(ctx: ContextDep, principal: PrincipalDep) -> ModelList:
    visible_to = None if principal.is_admin else principal.tenant_id
    return ModelList(models=ctx.registry.list_models(visible_to))


@router.post(
    "/models",
    status_code=status.HTTP_201_CREATED,
    summary="Create a model",
    responses=error_responses(400, 409),
)
def create_model(
    ctx: ContextDep, principal: PrincipalDep, request: Request, body: ModelCreate
) -> ModelRecord:
    note_target(request, name=body.name)
    record = ctx.registry.create_model(
        body.name,
        description=body.description,
        task=body.task,
        labels=body.labels,
        tags=body.tags,
        tenant_id=principal.tenant_id,
    )
    ctx.directory.invalidate(body.name)
    ctx.epochs.bump(Domain.ACCESS)
    return record


@router.put(
    "/models/{name}/access",
    summary="Make a model private or public, and share it with named tenants",
    responses=error_responses(400, 403, 404, 422),
)
def set_access(ctx: ContextDep, name: str, body: ModelAccess) -> ModelRecord:
    record = ctx.registry.set_access(
        name, public=body.visibility == "public", shared_with=body.shared_with
    )
    ctx.directory.invalidate(name)
    ctx.epochs.bump(Domain.ACCESS)
    return record


@router.get("/models/{name}", summary="Get a model", responses=error_responses(404))
def get_model(ctx: ContextDep, name: str) -> ModelRecord:
    return ctx.registry.get_model(name)


@router.patch(
    "/models/{name}",
    summary="Update a model's description, task, labels or tags",
    responses=error_responses(400, 404),
)
def update_model(ctx: ContextDep, name: str, body: ModelUpdate) -> ModelRecord:
    record = ctx.registry.update_model(name, **body.model_dump(exclude_unset=True))
    ctx.resolver.invalidate(name)
    ctx.epochs.bump(Domain.MODELS)
    return record


@router.delete(
    "/models/{name}",
    status_code=204,
    summary="Delete a model and all its versions",
    responses=error_responses(404),
)
def delete_model(ctx: ContextDep, name: str) -> Response:
    ctx.catalog.delete_model(name)
    return Response(status_code=204)


@router.get(
    "/models/{name}/versions", summary="List a model's versions", responses=error_responses(404)
)
def list_versions(ctx: ContextDep, name: str) -> VersionList:
    return VersionList(versions=ctx.registry.list_versions(name))


@router.post(
    "/models/{name}" + UPLOAD_SUFFIX,
    status_code=status.HTTP_201_CREATED,
    summary="Upload a new version (multipart); creates the model if it does not exist",
    responses=error_responses(400, 409, 413, 422),
)
async def push_version(
    ctx: ContextDep,
    principal: PrincipalDep,
    name: str,
    files: Annotated[
        list[UploadFile], File(min_length=1, description="Model files; filename = path")
    ],
    format: Annotated[
        str | None, Form(description="torchscript, torch_export, onnx, sklearn")
    ] = None,
    signature: Annotated[
        str | None, Form(description="JSON {inputs: [...], outputs: [...]}")
    ] = None,
    entrypoint: Annotated[str | None, Form(description="Which file is the model")] = None,
    description: Annotated[str, Form(max_length=DESCRIPTION_LENGTH, pattern=NO_NUL)] = "",
    metadata: Annotated[str | None, Form(description="JSON object")] = None,
    metrics: Annotated[str | None, Form(description="JSON object")] = None,
    source: Annotated[str | None, Form(description="JSON object: lineage")] = None,
    tags: Annotated[str | None, Form(description="JSON object of strings")] = None,
    archive: Annotated[
        bool,
        Form(description="The single uploaded file is a .zip/.tar(.gz) of the version's files"),
    ] = False,
) -> VersionRecord:
    push = PushRequest(
        files=[(f.filename or "model", f.file) for f in files],
        format=format or None,
        signature=Signature.parse(signature) if signature else None,
        entrypoint=entrypoint or None,
        description=description,
        metadata=_json_object(metadata, "metadata"),
        metrics=_json_object(metrics, "metrics"),
        source=_json_object(source, "source"),
        tags={str(k): str(v) for k, v in _json_object(tags, "tags").items()},
        archive=archive,
        created_by=principal.key_id,
        tenant_id=principal.tenant_id,
        own=not principal.is_admin,
    )
    record = await run_in_threadpool(ctx.catalog.push, name, push)
    ctx.directory.invalidate(name)
    ctx.resolver.invalidate(name)  # "latest" names the new version now
    ctx.epochs.bump(Domain.ACCESS)
    ctx.epochs.bump(Domain.MODELS)
    ctx.controller.notify()  # a deployment following "latest" rolls to the new version
    return record


@router.get(
    "/models/{name}/versions/{version}",
    summary="Get a version by number or alias",
    responses=error_responses(404),
)
def get_version(ctx: ContextDep, name: str, version: str) -> VersionRecord:
    return ctx.registry.get_version(name, version)


@router.delete(
    "/models/{name}/versions/{version}",
    status_code=204,
    summary="Delete a version",
    responses=error_responses(404, 409),
)
def delete_version(ctx: ContextDep, name: str, version: int) -> Response:
    ctx.catalog.delete_version(name, version)
    return Response(status_code=204)


@router.get(
    "/models/{name}/versions/{version}/files/{path:path}",
    summary="Download one file of a version (verified against its digest)",
    response_class=StreamingResponse,
    responses=error_responses(400, 404),
)
def download_file(ctx: ContextDep, name: str, version: str, path: str) -> StreamingResponse:
    record = ctx.registry.get_version(name, version)
    rel = safe_relative_path(path)
    entry = next((f for f in record.files if f.path == rel), None)
    if entry is None:
        raise NotFound(
            f"version {record.version} of '{name}' has no file '{rel}'; files: "
            f"{', '.join(f.path for f in record.files)}",
            param="path",
        )
    store = ctx.catalog.store
    store.verify(entry.digest)

    def chunks() -> Iterator[bytes]:
        yield from store.iter_bytes(entry.digest)

    return StreamingResponse(
        chunks(),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(entry.size),
            "Content-Disposition": f'attachment; filename="{rel.rsplit("/", 1)[-1]}"',
            "X-Checksum-Sha256": entry.digest,
        },
    )


@router.get(
    "/models/{name}/aliases", summary="List a model's aliases", responses=error_responses(404)
)
def list_aliases(ctx: ContextDep, name: str) -> AliasList:
    return AliasList(aliases=ctx.registry.get_model(name).aliases)


@router.put(
    "/models/{name}/aliases/{alias}",
    summary="Point an alias at a version (set or move)",
    responses=error_responses(400, 404),
)
def set_alias(ctx: ContextDep, name: str, alias: str, body: AliasTarget) -> VersionRecord:
    record = ctx.registry.set_alias(name, check_alias_name(alias), body.version)
    ctx.resolver.invalidate(name)
    ctx.epochs.bump(Domain.MODELS)
    ctx.controller.notify()
    return record


@router.delete(
    "/models/{name}/aliases/{alias}",
    status_code=204,
    summary="Delete an alias",
    responses=error_responses(404),
)
def delete_alias(ctx: ContextDep, name: str, alias: str) -> Response:
    ctx.registry.delete_alias(name, alias)
    ctx.resolver.invalidate(name)
    ctx.epochs.bump(Domain.MODELS)
    ctx.controller.notify()
    return Response(status_code=204)


def _json_object(raw: str | None, field: str) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"'{field}' is not valid JSON: {exc}", param=field) from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{field}' must be a JSON object", param=field)
    return value
