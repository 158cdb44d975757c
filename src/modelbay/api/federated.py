"""Federated jobs' clients under /api/v1/jobs/{job}/federated: join, poll, download a
round's global weights, send an update (``protocols.federated``; the rounds are run by the
job's coordinator, ``jobs.federated``)."""

from __future__ import annotations

import math
import shutil
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from modelbay.api.audit import note_target
from modelbay.api.auth import PrincipalDep
from modelbay.api.context import AppContext, ContextDep
from modelbay.api.errors import error_responses
from modelbay.api.jobs import JobId
from modelbay.errors import PayloadTooLarge
from modelbay.protocols.federated import (
    ClientView,
    FederationStatus,
    JoinRequest,
    UpdateReceipt,
    decode_tensors,
    encoded_size,
)
from modelbay.registry.federated import FederationStore

router = APIRouter(prefix="/api/v1/jobs/{job}/federated", tags=["federated"])

ClientName = Annotated[
    str, Path(max_length=32, pattern=r"^[a-z0-9-]+$", description="The client's id (join's)")
]
Round = Annotated[int, Path(ge=0, le=10_000, description="The round")]
Metric = Annotated[
    float | None, Query(ge=-1e12, le=1e12, description="A local metric of the update")
]
_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def _federations(ctx: ContextDep) -> FederationStore:
    return FederationStore(ctx.registry.engine)


FederationsDep = Annotated[FederationStore, Depends(_federations)]


@router.get(
    "",
    summary="A federated job's stage, open round and clients",
    responses=error_responses(404, 409),
)
def federation(federations: FederationsDep, job: JobId) -> FederationStatus:
    return federations.status(job)


@router.post(
    "/clients",
    status_code=status.HTTP_201_CREATED,
    summary="Join a federated job with the statistics of the client's data (never the data)",
    responses=error_responses(400, 404, 409, 422),
)
def join(
    federations: FederationsDep,
    principal: PrincipalDep,
    request: Request,
    job: JobId,
    body: JoinRequest,
) -> ClientView:
    view = federations.join(job, principal.key_id, body)
    note_target(request, job=job, client=view.client)
    return view


@router.get(
    "/clients/{client}",
    summary="What a client is to do now (wait, train, done or dropped); also its heartbeat",
    responses=error_responses(403, 404, 409),
)
def client_view(
    federations: FederationsDep, principal: PrincipalDep, job: JobId, client: ClientName
) -> ClientView:
    return federations.view(job, client, principal.key_id)


@router.get(
    "/rounds/{round}/model",
    summary="The global weights of the open round (safetensors)",
    response_class=Response,
    responses={200: {"content": _BINARY}, **error_responses(404, 409)},
)
def round_model(
    ctx: ContextDep, federations: FederationsDep, job: JobId, round: Round
) -> StreamingResponse:
    digest = federations.round_model(job, round)
    ctx.catalog.store.verify(digest)  # a corrupt blob is a 500 before the answer starts
    return StreamingResponse(
        ctx.catalog.store.iter_bytes(digest), media_type="application/octet-stream"
    )


@router.put(
    "/rounds/{round}/updates/{client}",
    status_code=status.HTTP_201_CREATED,
    summary="A client's update of the open round: its weights (safetensors, float32)",
    openapi_extra={"requestBody": {"required": True, "content": _BINARY}},
    responses=error_responses(400, 403, 404, 409, 413, 422),
)
async def send_update(
    ctx: ContextDep,
    federations: FederationsDep,
    principal: PrincipalDep,
    request: Request,
    job: JobId,
    round: Round,
    client: ClientName,
    examples: Annotated[int, Query(ge=1, le=2**40, description="Rows it trained on")],
    loss: Metric = None,
    accuracy: Metric = None,
) -> UpdateReceipt:
    note_target(request, job=job, client=client, round=round)
    shapes = await run_in_threadpool(
        federations.expect_update, job, round, client, principal.key_id
    )
    data = await _read_body(request, encoded_size(shapes))
    metrics = {k: v for k, v in (("loss", loss), ("accuracy", accuracy)) if v is not None}
    return await run_in_threadpool(
        _store_update,
        ctx,
        federations,
        data,
        shapes=shapes,
        job=job,
        round=round,
        client=client,
        key_id=principal.key_id,
        examples=examples,
        metrics=metrics,
    )


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past ``limit`` bytes (an update of the job's tensors)."""
    length = request.headers.get("content-length", "")
    too_large = PayloadTooLarge(f"an update of this job is at most {limit} bytes")
    if length.isdigit() and int(length) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _store_update(
    ctx: AppContext,
    federations: FederationStore,
    data: bytes,
    *,
    shapes: dict[str, list[int]],
    job: int,
    round: int,
    client: str,
    key_id: str,
    examples: int,
    metrics: dict[str, float],
) -> UpdateReceipt:
    decode_tensors(data, shapes)  # 422 naming the tensor, before anything is stored
    store = ctx.catalog.store
    stage = store.staging_dir()
    try:
        path = stage / "update.safetensors"
        path.write_bytes(data)
        with ctx.catalog.gc_lock.held():  # "blobs in, rows in" against collection
            blob = store.put_file(path)
            try:
                return federations.add_update(
                    job,
                    round,
                    client,
                    key_id,
                    digest=blob.digest,
                    examples=examples,
                    metrics={k: v for k, v in metrics.items() if math.isfinite(v)},
                )
            except Exception:
                for digest in federations.unused({blob.digest}):
                    store.delete(digest)
                raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
