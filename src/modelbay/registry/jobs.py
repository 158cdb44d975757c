"""The durable job queue: job rows claimed by workers with a lease, and their events.

A worker claims the oldest queued job, or a running one whose lease expired (its worker
died), with a new ``lease_token``; it renews the lease by heartbeat. Every write of a
running job names its token, so a worker that lost its lease changes nothing: the job
resumes in one worker at a time from its last checkpoint and registers one version.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Engine, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from modelbay.errors import Conflict, NotFound, Overloaded
from modelbay.registry.repository import unreferenced
from modelbay.registry.tables import JobEventRow, JobRow, TenantRow, as_utc, utcnow

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")
Heartbeat = Literal["ok", "cancel", "lost", "done"]


class JobRecord(BaseModel):
    """A job as the API shows it."""

    id: int
    kind: str
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


class JobStore:
    """Jobs and their events in the registry database."""

    def __init__(self, engine: Engine):
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self._sessions

    # -- submitting and reading --------------------------------------------------------

    def submit(
        self,
        *,
        tenant_id: int,
        spec: dict[str, Any],
        dataset: str,
        dataset_version: int,
        dataset_digest: str,
        model_name: str,
        deploy: bool,
        created_by: str | None,
        kind: str = "train",
    ) -> JobRecord:
        """Queue a job; 429 when the tenant already has ``max_jobs`` queued or running."""
        with self._sessions.begin() as s:
            limit = s.scalar(select(TenantRow.max_jobs).where(TenantRow.id == tenant_id))
            if limit is not None:
                active = s.scalar(
                    select(func.count(JobRow.id)).where(
                        JobRow.tenant_id == tenant_id, JobRow.state.in_(ACTIVE)
                    )
                )
                if (active or 0) >= limit:
                    raise Overloaded(
                        f"the tenant has {active} jobs queued or running, its limit "
                        f"(max_jobs {limit}); wait for one to finish or cancel one",
                        retry_after=30.0,
                    )
            row = JobRow(
                tenant_id=tenant_id,
                kind=kind,
                state="queued",
                cancel_requested=False,
                spec=spec,
                dataset=dataset,
                dataset_version=dataset_version,
                dataset_digest=dataset_digest,
                model_name=model_name,
                deploy=deploy,
                created_by=created_by,
                attempts=0,
                checkpoint_epoch=0,
                metrics={},
                result={},
                cpu_seconds=0.0,
            )
            s.add(row)
            s.flush()
            _event(s, row.id, "state", {"state": "queued"})
            return _record(s, row)

    def get(self, job_id: int) -> JobRecord:
        with self._sessions.begin() as s:
            return _record(s, _row(s, job_id))

    def owner(self, job_id: int) -> int | None:
        with self._sessions.begin() as s:
            return s.scalar(select(JobRow.tenant_id).where(JobRow.id == job_id))

    def list_jobs(
        self, tenant_id: int | None = None, *, state: str | None = None, limit: int = 100
    ) -> list[JobRecord]:
        """Newest first."""
        with self._sessions.begin() as s:
            query = select(JobRow).order_by(JobRow.id.desc()).limit(limit)
            if tenant_id is not None:
                query = query.where(JobRow.tenant_id == tenant_id)
            if state is not None:
                query = query.where(JobRow.state == state)
            return [_record(s, r) for r in s.scalars(query)]

    def events(self, job_id: int, after: int = 0, limit: int = 1000) -> list[JobEvent]:
        """Events with an id above ``after``, oldest first."""
        with self._sessions.begin() as s:
            query = (
                select(JobEventRow)
                .where(JobEventRow.job_id == job_id, JobEventRow.id > after)
                .order_by(JobEventRow.id)
                .limit(limit)
            )
            return [
                JobEvent(id=e.id, at=as_utc(e.at), kind=e.kind, data=e.data)
                for e in s.scalars(query)
            ]

    def cancel(self, job_id: int) -> JobRecord:
        """A queued job is cancelled at once; a running one is asked to stop (its worker
        stops it within a batch); a finished one is a 409."""
        with self._sessions.begin() as s:
            row = _row(s, job_id)
            if row.state in FINISHED:
                raise Conflict(f"job {job_id} already {row.state}", param="job")
            if row.state == "queued":
                row.state = "cancelled"
                row.finished_at = utcnow()
                _event(s, row.id, "state", {"state": "cancelled"})
            elif not row.cancel_requested:
                row.cancel_requested = True
                _event(s, row.id, "log", {"message": "cancellation requested"})
            s.flush()
            return _record(s, row)

    # -- workers -------------------------------------------------------------------------

    def claim(self, worker: str, lease_s: float) -> Claimed | None:
        """The oldest queued job, or a running one whose lease expired; None if none."""
        now = utcnow()
        with self._sessions.begin() as s:
            # A job asked to stop whose worker died meanwhile: it stops here.
            orphans = s.scalars(
                select(JobRow.id).where(
                    JobRow.state == "running",
                    JobRow.lease_expires_at < now,
                    JobRow.cancel_requested.is_(True),
                )
            ).all()
            for job_id in orphans:
                s.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id)
                    .values(state="cancelled", finished_at=now, lease_token=None)
                )
                _event(s, job_id, "state", {"state": "cancelled"})
            candidates = s.scalars(
                select(JobRow.id)
                .where(
                    or_(
                        JobRow.state == "queued",
                        (JobRow.state == "running") & (JobRow.lease_expires_at < now),
                    ),
                    JobRow.cancel_requested.is_(False),
                )
                .order_by(JobRow.id)
                .limit(5)
            ).all()
        for job_id in candidates:
            token = secrets.token_hex(16)
            with self._sessions.begin() as s:
                taken = s.execute(
                    update(JobRow)
                    .where(
                        JobRow.id == job_id,
                        or_(
                            JobRow.state == "queued",
                            (JobRow.state == "running") & (JobRow.lease_expires_at < now),
                        ),
                    )
                    .values(
                        state="running",
                        lease_token=token,
                        lease_expires_at=now + timedelta(seconds=lease_s),
                        worker=worker,
                        attempts=JobRow.attempts + 1,
                        started_at=func.coalesce(JobRow.started_at, now),
                    )
                ).rowcount  # type: ignore[attr-defined]
                if not taken:
                    continue  # another worker was first
                row = _row(s, job_id)
                resumed = row.checkpoint_epoch if row.attempts > 1 else None
                data: dict[str, Any] = {"state": "running", "worker": worker}
                if row.attempts > 1:
                    data["attempt"] = row.attempts
                    data["resumed_from_epoch"] = resumed
                _event(s, job_id, "state", data)
                return Claimed(job=_record(s, row), token=token, tenant_id=row.tenant_id)
        return None

    def heartbeat(self, job_id: int, token: str, lease_s: float) -> Heartbeat:
        """Renew the lease: ``ok``, ``cancel`` (asked to stop), ``done`` (its process ended
        it) or ``lost`` (another worker holds it now)."""
        with self._sessions.begin() as s:
            renewed = s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.lease_token == token, JobRow.state == "running")
                .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
            ).rowcount  # type: ignore[attr-defined]
            if not renewed:
                state = s.scalar(select(JobRow.state).where(JobRow.id == job_id))
                return "done" if state in FINISHED else "lost"
            cancel = s.scalar(select(JobRow.cancel_requested).where(JobRow.id == job_id))
            return "cancel" if cancel else "ok"

    def log(self, job_id: int, token: str, message: str, **data: Any) -> bool:
        with self._sessions.begin() as s:
            if not _holds(s, job_id, token):
                return False
            _event(s, job_id, "log", {"message": message, **data})
            return True

    def epoch(
        self,
        job_id: int,
        token: str,
        epoch: int,
        metrics: dict[str, float],
        checkpoint_digest: str | None,
        cpu_seconds: float,
    ) -> tuple[bool, set[str]]:
        """Record an epoch's metrics and checkpoint together; (held, blobs now unused)."""
        with self._sessions.begin() as s:
            row = s.scalar(select(JobRow).where(JobRow.id == job_id, JobRow.lease_token == token))
            if row is None or row.state != "running":
                return False, set()
            old = row.checkpoint_digest
            row.metrics = {"epoch": epoch, **metrics}
            row.cpu_seconds = row.cpu_seconds + cpu_seconds
            if checkpoint_digest is not None:
                row.checkpoint_digest = checkpoint_digest
                row.checkpoint_epoch = epoch
            _event(s, job_id, "metric", {"epoch": epoch, **metrics})
            s.flush()
            stale = {old} if old and old != row.checkpoint_digest else set()
            return True, unreferenced(s, stale)

    def finish(
        self,
        job_id: int,
        token: str,
        state: JobState,
        *,
        metrics: dict[str, Any] | None = None,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        model_version: int | None = None,
        cpu_seconds: float = 0.0,
    ) -> tuple[bool, set[str]]:
        """End a running job; (held, blobs now unused: its checkpoint)."""
        with self._sessions.begin() as s:
            row = s.scalar(select(JobRow).where(JobRow.id == job_id, JobRow.lease_token == token))
            if row is None or row.state != "running":
                return False, set()
            row.state = state
            row.finished_at = utcnow()
            row.lease_token = None
            row.lease_expires_at = None
            row.error = error
            row.model_version = model_version
            row.cpu_seconds = row.cpu_seconds + cpu_seconds
            if metrics:
                row.metrics = {**row.metrics, **metrics}
            if result is not None:
                row.result = result
            old = row.checkpoint_digest
            row.checkpoint_digest = None
            data: dict[str, Any] = {"state": state}
            if error:
                data["error"] = error
            if model_version is not None:
                data["model_version"] = model_version
            _event(s, job_id, "state", data)
            s.flush()
            return True, unreferenced(s, {old} if old else set())

    def release(self, job_id: int, token: str, reason: str) -> bool:
        """Give a running job back to the queue (its worker is stopping): the next worker
        resumes it from its last checkpoint at once, without waiting for the lease."""
        with self._sessions.begin() as s:
            released = s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.lease_token == token, JobRow.state == "running")
                .values(state="queued", lease_token=None, lease_expires_at=None, worker=None)
            ).rowcount  # type: ignore[attr-defined]
            if released:
                _event(s, job_id, "state", {"state": "queued", "reason": reason})
            return bool(released)

    def fail_lost(self, job_id: int, token: str, error: str) -> bool:
        """A worker's last word on a job whose process died without ending it."""
        held, _ = self.finish(job_id, token, "failed", error=error)
        return held


def _holds(s: Session, job_id: int, token: str) -> bool:
    return bool(
        s.scalar(
            select(func.count(JobRow.id)).where(
                JobRow.id == job_id, JobRow.lease_token == token, JobRow.state == "running"
            )
        )
    )


def _event(s: Session, job_id: int, kind: str, data: dict[str, Any]) -> None:
    s.add(JobEventRow(job_id=job_id, kind=kind, data=data))


def _row(s: Session, job_id: int) -> JobRow:
    row = s.get(JobRow, job_id)
    if row is None:
        raise NotFound(f"job {job_id} not found", param="job")
    return row


def _record(s: Session, row: JobRow) -> JobRecord:
    tenant = s.scalar(select(TenantRow.name).where(TenantRow.id == row.tenant_id)) or "?"
    return JobRecord(
        id=row.id,
        kind=row.kind,
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
