"""Jobs as the API shows them: a job's record, its events, and a worker's claim."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from modelbay.registry.tables import JobRow, TenantRow, as_utc


class JobRecord(BaseModel):
    """A job as the API shows it."""

    id: int
    kind: str = Field(description="train, search (a hyperparameter search) or federated")
    parent: int | None = Field(
        default=None, description="The search a trial belongs to (its parent job)"
    )
    state: str = Field(description="queued, running, succeeded, failed or cancelled")
    cancel_requested: bool
    tenant: str
    dataset: str
    dataset_version: int
    dataset_digest: str
    model: str = Field(description="The model a successful job registers a version of")
    model_version: int | None
    deploy: bool
    spec: dict[str, Any] = Field(description="Family, target and every hyperparameter")
    metrics: dict[str, Any] = Field(description="The last epoch's, then the final test metrics")
    result: dict[str, Any]
    error: str | None
    attempts: int = Field(description="How many times a worker started (or resumed) it")
    checkpoint_epoch: int
    cpu_seconds: float
    created_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobEvent(BaseModel):
    """One entry of a job's history: ``state``, ``metric`` (an epoch) or ``log``."""

    id: int
    at: datetime
    kind: str
    data: dict[str, Any]


class Claimed(BaseModel):
    """A job a worker now holds: its token goes with every write."""

    job: JobRecord
    token: str
    tenant_id: int


def job_record(s: Session, row: JobRow) -> JobRecord:
    tenant = s.scalar(select(TenantRow.name).where(TenantRow.id == row.tenant_id)) or "?"
    return JobRecord(
        id=row.id,
        kind=row.kind,
        parent=row.parent_id,
        state=row.state,
        cancel_requested=row.cancel_requested,
        tenant=tenant,
        dataset=row.dataset,
        dataset_version=row.dataset_version,
        dataset_digest=row.dataset_digest,
        model=row.model_name,
        model_version=row.model_version,
        deploy=row.deploy,
        spec=row.spec,
        metrics=row.metrics,
        result=row.result,
        error=row.error,
        attempts=row.attempts,
        checkpoint_epoch=row.checkpoint_epoch,
        cpu_seconds=round(row.cpu_seconds, 3),
        created_by=row.created_by,
        created_at=as_utc(row.created_at),
        started_at=as_utc(row.started_at) if row.started_at else None,
        finished_at=as_utc(row.finished_at) if row.finished_at else None,
    )
