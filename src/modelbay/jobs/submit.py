"""Checking and queueing a training job or a hyperparameter search (the API's
``POST /api/v1/jobs``)."""

from __future__ import annotations

import time
from typing import Any

from modelbay.errors import Conflict, InvalidRequest, NotFound, Overloaded
from modelbay.registry import Registry
from modelbay.registry.datasets import DatasetStore, DatasetVersionRecord
from modelbay.registry.jobs import JobRecord, JobStore
from modelbay.registry.repository import check_model_name
from modelbay.registry.tables import TenantRow
from modelbay.security.principals import Principal
from modelbay.security.usage import seconds_to_midnight, training_seconds_today
from modelbay.training.search_space import SearchOptions


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
    # A federation of real clients waits for them: it coordinates, and trains nothing.
    kind = "federated" if spec.strategy == "federated" and not spec.simulate else "train"
    return _queue(
        jobs,
        registry,
        principal,
        version,
        spec.model_dump(mode="json"),
        kind,
        model or f"{dataset}-{family}",
        deploy,
    )


def submit_search(
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
    search: SearchOptions,
    model: str | None,
    deploy: bool,
) -> JobRecord:
    """Check a hyperparameter search (its space against the dataset's schema) and queue it;
    the 4xx of ``submit_training``, and 422 naming a field of ``search``. Its best trial
    registers a version of ``model`` (default DATASET-FAMILY, the primary family)."""
    from modelbay.training.search_space import resolve_search
    from modelbay.training.table import DatasetSchema

    version = datasets.version(dataset, dataset_version)
    schema: DatasetSchema = version.schema_  # type: ignore[assignment]
    spec = resolve_search(family, target, params, search, schema)
    return _queue(
        jobs,
        registry,
        principal,
        version,
        spec.model_dump(mode="json"),
        "search",
        model or f"{dataset}-{family}",
        deploy,
    )


def _queue(
    jobs: JobStore,
    registry: Registry,
    principal: Principal,
    version: DatasetVersionRecord,
    spec: dict[str, Any],
    kind: str,
    model: str,
    deploy: bool,
) -> JobRecord:
    """Queue a checked job of ``kind`` on dataset ``version``: 409 if ``model`` is another
    tenant's, 429 over the tenant's limits."""
    name = _model_name(registry, principal, model)
    check_training_time(jobs, principal.tenant_id)
    return jobs.submit(
        tenant_id=principal.tenant_id,
        spec=spec,
        dataset=version.dataset,
        dataset_version=version.version,
        dataset_digest=version.digest,
        model_name=name,
        deploy=deploy,
        created_by=principal.key_id,
        kind=kind,
    )


def _model_name(registry: Registry, principal: Principal, name: str) -> str:
    """``name``, if the principal may register versions of it (409 if another tenant's)."""
    check_model_name(name)
    try:
        existing = registry.get_model(name)
    except NotFound:
        existing = None
    if existing is not None and not principal.is_admin and existing.tenant != principal.tenant:
        raise Conflict(
            f"model '{name}' belongs to another tenant; choose another name", param="name"
        )
    return name


def check_training_time(jobs: JobStore, tenant_id: int) -> None:
    """429 (with ``Retry-After``) once the tenant used its training seconds of the day."""
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
