"""Datasets under /api/v1/datasets: upload (or a bundled sample), list, show, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from modelbay.api.audit import note_target
from modelbay.api.auth import PrincipalDep
from modelbay.api.context import ContextDep
from modelbay.api.errors import error_responses
from modelbay.api.fields import DESCRIPTION_LENGTH, NO_NUL
from modelbay.errors import InvalidRequest
from modelbay.frontends.epochs import Domain
from modelbay.registry.datasets import DatasetRecord, DatasetVersionRecord

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"])

FORMATS = ("csv", "parquet", "npz", "images", "cifar10")
SAMPLES = ("digits", "iris", "wine", "breast_cancer", "diabetes")


class DatasetList(BaseModel):
    datasets: list[DatasetRecord]


class DatasetVersionList(BaseModel):
    versions: list[DatasetVersionRecord]


@router.get("", summary="List the caller's datasets")
def list_datasets(ctx: ContextDep, principal: PrincipalDep) -> DatasetList:
    tenant = None if principal.is_admin else principal.tenant_id
    return DatasetList(datasets=ctx.dataset_catalog.datasets.list_datasets(tenant))


@router.get(
    "/{name}",
    summary="A dataset: its newest version's schema, row count, class balance and statistics",
    responses=error_responses(404),
)
def get_dataset(ctx: ContextDep, name: str) -> DatasetRecord:
    return ctx.dataset_catalog.datasets.get(name)


@router.get(
    "/{name}/versions", summary="Every version of a dataset", responses=error_responses(404)
)
def list_versions(ctx: ContextDep, name: str) -> DatasetVersionList:
    return DatasetVersionList(versions=ctx.dataset_catalog.datasets.versions(name))


@router.post(
    "/{name}/versions",
    status_code=status.HTTP_201_CREATED,
    summary="Upload a new version (multipart file, or a bundled sample); creates the dataset",
    responses=error_responses(400, 409, 413, 422),
)
async def push_dataset(
    ctx: ContextDep,
    principal: PrincipalDep,
    request: Request,
    name: str,
    file: Annotated[
        UploadFile | None, File(description="CSV, Parquet, .npz, image-folder .zip, CIFAR-10 .bin")
    ] = None,
    sample: Annotated[
        str | None, Form(description=f"Instead of a file: one of {', '.join(SAMPLES)}")
    ] = None,
    format: Annotated[
        str | None, Form(description=" | ".join(FORMATS) + " (default: by name)")
    ] = None,
    description: Annotated[str, Form(max_length=DESCRIPTION_LENGTH, pattern=NO_NUL)] = "",
) -> DatasetVersionRecord:
    note_target(request, dataset=name)
    if format is not None and format not in FORMATS:
        raise InvalidRequest(
            f"unknown dataset format '{format}'; formats: {', '.join(FORMATS)}", param="format"
        )
    if sample is not None and sample not in SAMPLES:
        raise InvalidRequest(
            f"unknown sample '{sample}'; samples: {', '.join(SAMPLES)}", param="sample"
        )
    upload = None if file is None else (file.filename or "upload", file.file)
    record = await run_in_threadpool(
        ctx.dataset_catalog.push,
        name,
        upload=upload,
        sample=sample,
        format=format,
        tenant_id=principal.tenant_id,
        own=not principal.is_admin,
        created_by=principal.key_id,
        description=description,
    )
    ctx.epochs.bump(Domain.ACCESS)
    return record


@router.delete(
    "/{name}",
    status_code=204,
    summary="Delete a dataset and its versions (jobs that used it keep its digest)",
    responses=error_responses(404),
)
def delete_dataset(ctx: ContextDep, name: str) -> Response:
    ctx.dataset_catalog.delete(name)
    ctx.epochs.bump(Domain.ACCESS)
    return Response(status_code=204)
