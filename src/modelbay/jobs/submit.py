"""Checking and queueing a training job (the API's ``POST /api/v1/jobs``)."""

from __future__ import annotations

import time
from typing import Any

from modelbay.errors import Conflict, InvalidRequest, NotFound, Overloaded
from modelbay.registry import Registry
from modelbay.registry.datasets import DatasetStore
from modelbay.registry.jobs import JobRecord, JobStore
from modelbay.registry.repository import check_model_name
from modelbay.registry.tables import TenantRow
from modelbay.security.principals import Principal
from modelbay.security.usage import seconds_to_midnight, training_seconds_today


def submit_training(
    jobs: JobStore,
    datasets: DatasetStore,
    registry: Registry,
    principal: Principal,
    *,
    dataset: str,
    dataset_version: int | None,
    family: str,
    target: str,
    params: dict[str, Any],
    model: str | None,
    deploy: bool,
) -> JobRecord:
    """Resolve the spec against the dataset's schema and queue the job, or raise the 4xx
    that names what is wrong (422 for a spec, 409 for a model name another tenant holds,
    429 over the tenant's job or training-time limits)."""
    from modelbay.training.spec import resolve_spec
    from modelbay.training.table import DatasetSchema

    version = datasets.version(dataset, dataset_version)
    schema: DatasetSchema = version.schema_  # type: ignore[assignment]
    spec = resolve_spec(family, target, params, schema)
    name = model or f"{dataset}-{family}"
    check_model_name(name)
    try:
        existing = registry.get_model(name)
    except NotFound:
        existing = None
    if existing is not None and not principal.is_admin and existing.tenant != principal.tenant:
        raise Conflict(
            f"model '{name}' belongs to another tenant; choose another name", param="name"
        )
    _check_training_time(jobs, principal.tenant_id)
    return jobs.submit(
        tenant_id=principal.tenant_id,
        spec=spec.model_dump(mode="json"),
        dataset=dataset,
        dataset_version=version.version,
        dataset_digest=version.digest,
        model_name=name,
        deploy=deploy,
        created_by=principal.key_id,
    )


def _check_training_time(jobs: JobStore, tenant_id: int) -> None:
    from sqlalchemy import select

    with jobs.sessions.begin() as s:
        limit = s.scalar(
            select(TenantRow.training_seconds_per_day).where(TenantRow.id == tenant_id)
        )
    if limit is None:
        return
    used = training_seconds_today(jobs.sessions, tenant_id)
    if used >= limit:
        raise Overloaded(
            f"the tenant used {used:.0f} CPU seconds of training today, its limit "
            f"(training_seconds_per_day {limit:g}); it resets at midnight UTC",
            retry_after=seconds_to_midnight(time.time()),
        )


def parse_params(pairs: list[str]) -> dict[str, str]:
    """``["lr=0.01", "hidden=128,64"]`` as a dict (the CLI's ``--param``)."""
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidRequest(f"--param '{pair}' is not KEY=VALUE", param="params")
        params[key.strip()] = value.strip()
    return params
