"""The durable job queue: job rows claimed by workers with a lease, and their events.

A worker claims the oldest queued job, or a running one whose lease expired (its worker
died), with a new ``lease_token``; it renews the lease by heartbeat. Every write of a
running job names its token, so a worker that lost its lease changes nothing: the job
resumes in one worker at a time from its last checkpoint and registers one version.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import Engine, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from modelbay.errors import Conflict, NotFound, Overloaded
from modelbay.registry.job_records import Claimed as Claimed
from modelbay.registry.job_records import JobEvent as JobEvent
from modelbay.registry.job_records import JobRecord as JobRecord
from modelbay.registry.job_records import job_record
from modelbay.registry.repository import unreferenced
from modelbay.registry.tables import JobEventRow, JobRow, TenantRow, as_utc, utcnow

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")
Heartbeat = Literal["ok", "cancel", "lost", "done"]
TRAINING: tuple[str, ...] = ("train",)
"""Job kinds that train: a worker runs one of them at a time."""
COORDINATORS: tuple[str, ...] = ("search", "federated")
"""Job kinds that coordinate (the trials of a search, the clients of a federated job) and
compute little: a worker runs them beside its training job."""
KINDS = TRAINING + COORDINATORS


class JobStore:
    """Jobs and their events in the registry database."""

    def __init__(self, engine: Engine):
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.engine = engine

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
        parent_id: int | None = None,
        result: dict[str, Any] | None = None,
    ) -> JobRecord:
        """Queue a job; 429 when the tenant already has ``max_jobs`` queued or running (a
        search's trials, ``parent_id`` set, count as their search). ``result``: what the
        job's result holds until it ends (a trial: its number in the search)."""
        assert kind in KINDS, kind
        with self._sessions.begin() as s:
            limit = s.scalar(select(TenantRow.max_jobs).where(TenantRow.id == tenant_id))
            if limit is not None and parent_id is None:
                active = s.scalar(
                    select(func.count(JobRow.id)).where(
                        JobRow.tenant_id == tenant_id,
                        JobRow.state.in_(ACTIVE),
                        JobRow.parent_id.is_(None),
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
                parent_id=parent_id,
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
                result=result or {},
                cpu_seconds=0.0,
            )
            s.add(row)
            s.flush()
            _event(s, row.id, "state", {"state": "queued"})
            return job_record(s, row)

    def get(self, job_id: int) -> JobRecord:
        with self._sessions.begin() as s:
            return job_record(s, _row(s, job_id))

    def owner(self, job_id: int) -> int | None:
        with self._sessions.begin() as s:
            return s.scalar(select(JobRow.tenant_id).where(JobRow.id == job_id))

    def list_jobs(
        self,
        tenant_id: int | None = None,
        *,
        state: str | None = None,
        parent: int | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        """Newest first; ``parent``: the trials of that search only."""
        with self._sessions.begin() as s:
            query = select(JobRow).order_by(JobRow.id.desc()).limit(limit)
            if tenant_id is not None:
                query = query.where(JobRow.tenant_id == tenant_id)
            if state is not None:
                query = query.where(JobRow.state == state)
            if parent is not None:
                query = query.where(JobRow.parent_id == parent)
            return [job_record(s, r) for r in s.scalars(query)]

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
        """A queued job is cancelled at once (and its trials, if a search that ran before);
        a running one is asked to stop (its worker stops it within a batch, a search its
        trials); a finished one is a 409."""
        with self._sessions.begin() as s:
            row = _row(s, job_id)
            if row.state in FINISHED:
                raise Conflict(f"job {job_id} already {row.state}", param="job")
            if row.state == "queued":
                row.state = "cancelled"
                row.finished_at = utcnow()
                _event(s, row.id, "state", {"state": "cancelled"})
                _cancel_children(s, row.id)
            elif not row.cancel_requested:
                row.cancel_requested = True
                _event(s, row.id, "log", {"message": "cancellation requested"})
            s.flush()
            return job_record(s, row)

    # -- workers -------------------------------------------------------------------------

    def claim(self, worker: str, lease_s: float, kinds: tuple[str, ...] = KINDS) -> Claimed | None:
        """The oldest queued job of one of ``kinds``, or a running one whose lease expired;
        None if none."""
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
                _cancel_children(s, job_id)
            candidates = s.scalars(
                select(JobRow.id)
                .where(
                    or_(
                        JobRow.state == "queued",
                        (JobRow.state == "running") & (JobRow.lease_expires_at < now),
                    ),
                    JobRow.cancel_requested.is_(False),
                    JobRow.kind.in_(kinds),
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
                return Claimed(job=job_record(s, row), token=token, tenant_id=row.tenant_id)
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
        keep: str | None = None,
    ) -> tuple[bool, set[str]]:
        """End a running job; (held, blobs now unused: its checkpoint). ``keep``: a blob the
        row goes on referencing while the job's search runs (a trial's exported model; its
        search releases it). A search's trials still active are cancelled, and the blobs
        its finished trials kept are released."""
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
            if keep is not None and row.parent_id is not None:
                parent = s.scalar(select(JobRow.state).where(JobRow.id == row.parent_id))
                row.checkpoint_digest = keep if parent in ACTIVE else None
            stale = {d for d in (old, keep) if d and d != row.checkpoint_digest}
            _cancel_children(s, job_id)
            stale |= _release_kept(s, job_id)
            data: dict[str, Any] = {"state": state}
            if error:
                data["error"] = error
            if model_version is not None:
                data["model_version"] = model_version
            _event(s, job_id, "state", data)
            s.flush()
            return True, unreferenced(s, stale)

    def release_kept(self, parent_id: int, *, keep_job: int | None = None) -> set[str]:
        """Stop referencing the models that the finished trials of search ``parent_id``
        kept (all but ``keep_job``'s); the blobs no row uses any more. Delete them under
        the registry's lock (``RegistryLock``), as a concurrent push may reuse one."""
        with self._sessions.begin() as s:
            return unreferenced(s, _release_kept(s, parent_id, keep_job))

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

    def fail_lost(self, job_id: int, token: str, error: str) -> tuple[bool, set[str]]:
        """A worker's last word on a job whose process died without ending it; (held, blobs
        now unused: its checkpoint, and the models its trials kept if it was a search)."""
        return self.finish(job_id, token, "failed", error=error)


def _holds(s: Session, job_id: int, token: str) -> bool:
    return bool(
        s.scalar(
            select(func.count(JobRow.id)).where(
                JobRow.id == job_id, JobRow.lease_token == token, JobRow.state == "running"
            )
        )
    )


def _cancel_children(s: Session, job_id: int) -> None:
    """The trials of a search that ended: queued ones cancelled, running ones asked to stop."""
    for child in s.scalars(
        select(JobRow).where(JobRow.parent_id == job_id, JobRow.state.in_(ACTIVE))
    ):
        if child.state == "queued":
            child.state = "cancelled"
            child.finished_at = utcnow()
            _event(s, child.id, "state", {"state": "cancelled", "reason": "its search ended"})
        elif not child.cancel_requested:
            child.cancel_requested = True
            _event(s, child.id, "log", {"message": "cancellation requested: its search ended"})


def _release_kept(s: Session, parent_id: int, keep_job: int | None = None) -> set[str]:
    """Clear the digests the finished trials of ``parent_id`` (but ``keep_job``) kept."""
    kept = s.execute(
        select(JobRow.id, JobRow.checkpoint_digest).where(
            JobRow.parent_id == parent_id,
            JobRow.state.in_(FINISHED),
            JobRow.checkpoint_digest.is_not(None),
            JobRow.id != (keep_job or 0),
        )
    ).all()
    if kept:
        s.execute(
            update(JobRow)
            .where(JobRow.id.in_([job_id for job_id, _ in kept]))
            .values(checkpoint_digest=None)
        )
    return {digest for _, digest in kept if digest}


def _event(s: Session, job_id: int, kind: str, data: dict[str, Any]) -> None:
    s.add(JobEventRow(job_id=job_id, kind=kind, data=data))


def _row(s: Session, job_id: int) -> JobRow:
    row = s.get(JobRow, job_id)
    if row is None:
        raise NotFound(f"job {job_id} not found", param="job")
    return row
