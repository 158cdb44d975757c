"""Training jobs and hyperparameter searches under /api/v1/jobs: submit, list, show, follow
(server-sent events), cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from modelbay.api.audit import note_target
from modelbay.api.auth import PrincipalDep
from modelbay.api.context import ContextDep
from modelbay.api.errors import error_responses
from modelbay.api.fields import Name
from modelbay.jobs.submit import submit_search, submit_training
from modelbay.jobs.trial import release_trials
from modelbay.registry.jobs import FINISHED, JobEvent, JobRecord
from modelbay.security.access import MAX_JOB_ID
from modelbay.training.search_space import SearchOptions

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])

JobId = Annotated[int, Path(ge=1, le=MAX_JOB_ID, description="The job's id")]

FOLLOW_POLL_S = 0.5
KEEPALIVE_S = 15.0


class JobCreate(BaseModel):
    """A training job: a dataset, a model family, its target column and hyperparameters;
    with ``search``, a hyperparameter search whose best trial is registered."""

    model_config = ConfigDict(extra="forbid")

    dataset: Name = Field(description="The dataset to train on")
    dataset_version: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="Default: the newest"
    )
    family: str = Field(
        max_length=32,
        description="linear, logistic, perceptron, mlp, cnn, resnet, rnn, lstm or gru",
    )
    target: str = Field(max_length=256, description="The column to predict ('label' for images)")
    params: dict[str, Any] = Field(
        default={}, description="Hyperparameters: optimizer, lr, batch_size, epochs, ..."
    )
    name: Name | None = Field(
        default=None, description="The model to register a version of (default DATASET-FAMILY)"
    )
    deploy: bool = Field(default=False, description="Deploy the new version when it is ready")
    search: SearchOptions | None = Field(
        default=None,
        description="A hyperparameter search: trials of `family` (or of `search.families`) "
        "over `search.space`; `params` are fixed in every trial",
    )


class JobList(BaseModel):
    jobs: list[JobRecord]


class JobEvents(BaseModel):
    events: list[JobEvent]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Queue a training job or a hyperparameter search",
    responses=error_responses(400, 404, 409, 422, 429),
)
def create_job(
    ctx: ContextDep, principal: PrincipalDep, request: Request, body: JobCreate
) -> JobRecord:
    common: dict[str, Any] = {
        "dataset": body.dataset,
        "dataset_version": body.dataset_version,
        "family": body.family,
        "target": body.target,
        "params": body.params,
        "model": body.name,
        "deploy": body.deploy,
    }
    datasets = ctx.dataset_catalog.datasets
    if body.search is not None:
        record = submit_search(
            ctx.jobs, datasets, ctx.registry, principal, search=body.search, **common
        )
    else:
        record = submit_training(ctx.jobs, datasets, ctx.registry, principal, **common)
    note_target(request, job=record.id, model=record.model)
    return record


@router.get("", summary="The caller's jobs, newest first")
def list_jobs(
    ctx: ContextDep,
    principal: PrincipalDep,
    state: Annotated[
        str | None, Query(pattern="^(queued|running|succeeded|failed|cancelled)$")
    ] = None,
    parent: Annotated[
        int | None, Query(ge=1, le=MAX_JOB_ID, description="Only the trials of this search")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JobList:
    tenant = None if principal.is_admin else principal.tenant_id
    return JobList(jobs=ctx.jobs.list_jobs(tenant, state=state, parent=parent, limit=limit))


@router.get("/{job}", summary="A job: state, spec, metrics, result", responses=error_responses(404))
def get_job(ctx: ContextDep, job: JobId) -> JobRecord:
    return ctx.jobs.get(job)


@router.get(
    "/{job}/events",
    summary="A job's history (state changes, epochs' metrics, logs); "
    "follow=true streams it as server-sent events until the job ends",
    responses={
        200: {"content": {"text/event-stream": {}, "application/json": {}}},
        **error_responses(404),
    },
    response_model=None,
)
async def job_events(
    ctx: ContextDep,
    job: JobId,
    after: Annotated[int, Query(ge=0, le=MAX_JOB_ID, description="Only events after this id")] = 0,
    follow: bool = False,
) -> JobEvents | StreamingResponse:
    await run_in_threadpool(ctx.jobs.get, job)  # 404 before a stream starts
    if not follow:
        return JobEvents(events=await run_in_threadpool(ctx.jobs.events, job, after))
    return StreamingResponse(
        _stream(ctx, job, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(ctx: Any, job: int, after: int) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    while True:
        events = await run_in_threadpool(ctx.jobs.events, job, after)
        for event in events:
            after = event.id
            yield _sse(event.id, event.kind, event.model_dump(mode="json"))
        if events:
            quiet_since = loop.time()
        else:
            record = await run_in_threadpool(ctx.jobs.get, job)
            if record.state in FINISHED:
                # Events written before the state changed are all read by now.
                tail = await run_in_threadpool(ctx.jobs.events, job, after)
                for event in tail:
                    after = event.id
                    yield _sse(event.id, event.kind, event.model_dump(mode="json"))
                yield _sse(after, "end", record.model_dump(mode="json"))
                return
            if loop.time() - quiet_since > KEEPALIVE_S:
                quiet_since = loop.time()
                yield b": keep-alive\n\n"
        await asyncio.sleep(FOLLOW_POLL_S)


def _sse(event_id: int, kind: str, data: dict[str, Any]) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, kind.encode(), orjson.dumps(data))


@router.post(
    "/{job}/cancel",
    summary="Cancel a job: a queued one at once, a running one within a batch (a search: "
    "with its trials)",
    responses=error_responses(404, 409),
)
def cancel_job(ctx: ContextDep, job: JobId) -> JobRecord:
    record = ctx.jobs.cancel(job)
    if record.kind == "search" and record.state == "cancelled":  # queued: its coordinator
        # is not there to delete the models its finished trials kept (if it ran before).
        release_trials(ctx.registry.engine, ctx.jobs, ctx.catalog.store, job, None)
    return record
