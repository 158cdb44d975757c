"""Deployments under /api/v1/deployments: desired state that the controller converges to."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, Literal

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from modelbay.api.audit import note_target
from modelbay.api.auth import PrincipalDep
from modelbay.api.context import AppContext, ContextDep
from modelbay.api.errors import error_responses
from modelbay.api.fields import Name, Reference
from modelbay.errors import NotFound, UnknownReference
from modelbay.registry import DeploymentConfig, DeploymentRecord
from modelbay.serving.metrics import HistogramTotals, model_totals

router = APIRouter(prefix="/api/v1/deployments", tags=["deployments"])


class ConfigFields(BaseModel):
    """Serving settings; omitted fields keep their default (create) or value (update)."""

    # `true` is no replica count, and `Infinity` (which Python's JSON reads) no delay
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    min_replicas: int | None = Field(default=None, ge=0, le=64)
    max_replicas: int | None = Field(default=None, ge=1, le=64)
    max_batch_size: int | None = Field(default=None, ge=1, le=4096)
    max_queue_delay_ms: float | None = Field(default=None, ge=0, le=10_000)
    queue_capacity: int | None = Field(default=None, ge=1, le=1_000_000)
    # Below a millisecond every request would be answered 504: a mistake, not a setting.
    request_timeout_ms: float | None = Field(default=None, ge=1, le=3_600_000)
    threads_per_replica: int | None = Field(default=None, ge=1, le=64)
    target_inflight_per_replica: float | None = Field(default=None, gt=0, le=100_000)
    scale_up_delay_s: float | None = Field(default=None, ge=0, le=86_400)
    scale_down_delay_s: float | None = Field(default=None, ge=0, le=86_400)
    idle_to_zero_s: float | None = Field(default=None, ge=0, le=7 * 86_400)
    kv_cache_mb: int | None = Field(default=None, ge=1, le=1_048_576)
    max_model_len: int | None = Field(default=None, ge=16, le=1_048_576)
    dtype: Literal["auto", "float32", "bfloat16"] | None = None
    quantization: Literal["none", "int8"] | None = None

    def config_changes(self) -> dict[str, Any]:
        return self.model_dump(
            include=set(DeploymentConfig.model_fields), exclude_none=True, exclude_unset=True
        )


class DeploymentCreate(ConfigFields):
    """Deploy a model: ``version`` is a number, an alias (followed as it moves) or latest."""

    model: Name
    version: Reference = "latest"
    canary_version: Reference | None = None
    canary_weight: int = Field(default=0, ge=0, le=100, description="percent to the canary")


class DeploymentUpdate(ConfigFields):
    """Change what a deployment serves or how; ``canary_version: ""`` removes the canary."""

    version: Reference | None = None
    canary_version: Reference | None = None
    canary_weight: int | None = Field(default=None, ge=0, le=100)


class DeploymentOut(DeploymentRecord):
    status: dict[str, Any]


class DeploymentList(BaseModel):
    deployments: list[DeploymentOut]


class HistogramOut(BaseModel):
    """A histogram since the server started: ``cumulative[i]`` observations were at most
    ``bounds[i]``; ``count`` is every observation (the +Inf bucket), ``sum`` their total."""

    bounds: list[float] = Field(description="bucket upper bounds, ascending (+Inf left out)")
    cumulative: list[int] = Field(description="observations at most each bound")
    count: int
    sum: float


class DeploymentStats(BaseModel):
    """Cumulative counters of the deployment's model since the server started, summed over
    its versions and the server's frontend processes (what ``/metrics`` reports): rates and
    quantiles are differences between two reads."""

    deployment: str
    model: str
    collected_at: float = Field(description="server time of the read (Unix seconds)")
    requests: dict[str, int] = Field(description="requests answered, by HTTP status")
    latency_seconds: HistogramOut = Field(description="arrival to answer, successful requests")
    queue_wait_seconds: HistogramOut = Field(description="time in the batching queue")
    compute_seconds: HistogramOut = Field(description="model compute time per batch")
    batch_size: HistogramOut = Field(description="rows per batch run on a replica")
    queue_depth: float = Field(description="requests waiting in the batching queue now")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Deploy a model",
    responses=error_responses(400, 404, 409, 422),
)
def create(ctx: ContextDep, request: Request, body: DeploymentCreate) -> DeploymentOut:
    note_target(request, name=body.model)
    _check_targets(ctx, body.model, version=body.version, canary_version=body.canary_version)
    record = ctx.deployments.create(
        body.model,
        body.version,
        DeploymentConfig.parse(body.config_changes()),
        canary_target=body.canary_version,
        canary_weight=body.canary_weight,
    )
    ctx.controller.notify()
    return _out(ctx, record)


@router.get("", summary="List deployments with what is running")
def list_deployments(ctx: ContextDep, principal: PrincipalDep) -> DeploymentList:
    tenant_id = None if principal.is_admin else principal.tenant_id
    return DeploymentList(deployments=[_out(ctx, r) for r in ctx.deployments.list(tenant_id)])


@router.get(
    "/{name}", summary="Get a deployment with what is running", responses=error_responses(404)
)
def get(ctx: ContextDep, name: str) -> DeploymentOut:
    return _out(ctx, ctx.deployments.get(name))


@router.get(
    "/{name}/stats",
    summary="A deployment's request, latency, batch and queue counters",
    responses=error_responses(404),
)
def stats(ctx: ContextDep, name: str) -> DeploymentStats:
    record = ctx.deployments.get(name)
    totals = model_totals(ctx.inference.metrics.registry, record.model)

    def histogram(h: HistogramTotals) -> HistogramOut:
        return HistogramOut(**asdict(h))

    return DeploymentStats(
        deployment=record.name,
        model=record.model,
        collected_at=time.time(),
        requests=totals.requests,
        latency_seconds=histogram(totals.latency_seconds),
        queue_wait_seconds=histogram(totals.queue_wait_seconds),
        compute_seconds=histogram(totals.compute_seconds),
        batch_size=histogram(totals.batch_size),
        queue_depth=totals.queue_depth,
    )


@router.patch(
    "/{name}",
    summary="Change a deployment: version, canary, replicas, batching",
    responses=error_responses(400, 404, 422),
)
def update(ctx: ContextDep, name: str, body: DeploymentUpdate) -> DeploymentOut:
    changes = body.config_changes()
    if body.version is not None:
        changes["target"] = body.version
    if body.canary_version is not None:
        changes["canary_target"] = body.canary_version or None
    if body.canary_weight is not None:
        changes["canary_weight"] = body.canary_weight
    model = ctx.deployments.get(name).model
    _check_targets(ctx, model, version=body.version, canary_version=body.canary_version)
    record = ctx.deployments.update(name, **changes)
    ctx.controller.notify()
    return _out(ctx, record)


@router.delete(
    "/{name}",
    status_code=204,
    summary="Undeploy (queued requests are served first)",
    responses=error_responses(404),
)
def delete(ctx: ContextDep, name: str) -> Response:
    ctx.deployments.delete(name)
    ctx.controller.notify()
    return Response(status_code=204)


def _check_targets(ctx: AppContext, model: str, **targets: str | None) -> None:
    """Each named version or alias must exist now (422 naming the field); aliases are then
    followed."""
    for field, target in targets.items():
        if not target:
            continue
        try:
            ctx.registry.get_version(model, target)
        except NotFound as exc:
            raise UnknownReference(f"{field}: {exc.message}", param=field) from None


def _out(ctx: AppContext, record: DeploymentRecord) -> DeploymentOut:
    return DeploymentOut(**record.model_dump(), status=ctx.controller.status(record.name))
