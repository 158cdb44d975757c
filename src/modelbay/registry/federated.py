"""What a federated job's coordinator and its clients share, in the registry database: the
federation (its stage, the open round, that round's global weights as a blob), the clients
that joined and their updates (blobs too, until the round closes).

The API frontends (any number of processes) write joins and updates; the job's coordinator
process (``jobs.federated``) opens and closes rounds. Every answer a client can cause is a
``ModelbayError`` naming the problem: a job that is not federated, a finished one, a wrong
round, an unknown client.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from modelbay.errors import Conflict, Forbidden, InvalidRequest, NotFound
from modelbay.protocols.federated import ClientView, FederationStatus, JoinRequest, UpdateReceipt
from modelbay.registry.jobs import FINISHED
from modelbay.registry.repository import unreferenced
from modelbay.registry.tables import (
    FederatedClientRow,
    FederatedUpdateRow,
    FederationRow,
    JobRow,
    as_utc,
    utcnow,
)

LIVENESS_S = 10.0
"""A client not heard from for this long is taken for gone: a round stops waiting for it
once enough others have answered (its clients poll every second or so, even training)."""


@dataclass(frozen=True)
class ClientRecord:
    name: str
    state: str
    examples: int
    statistics: dict[str, Any]
    last_seen: datetime


@dataclass(frozen=True)
class UpdateRecord:
    client: str
    digest: str
    examples: int
    metrics: dict[str, float]


class FederationStore:
    """Federations, their clients and updates."""

    def __init__(self, engine: Engine):
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    # -- the clients' side (API frontends) -----------------------------------------------

    def status(self, job_id: int) -> FederationStatus:
        with self._sessions.begin() as s:
            job, fed = _job(s, job_id), _federation(s, job_id)
            return _status(s, job, fed)

    def join(self, job_id: int, key_id: str | None, request: JoinRequest) -> ClientView:
        """Add a client with its data's statistics; 409 when the job takes no more."""
        with self._sessions.begin() as s:
            job, fed = _job(s, job_id), _federation(s, job_id)
            fed = _running(job, fed)
            clients = int(job.spec.get("clients", 1))
            joined = _count(s, FederatedClientRow, fed.id)
            if joined >= clients:
                raise Conflict(
                    f"job {job_id} has its {clients} clients; it takes no more", param="job"
                )
            values = math.prod(fed.row_shape)
            for field in ("feature_sum", "feature_sum_sq"):
                if len(getattr(request, field)) != values:
                    raise InvalidRequest(
                        f"{field} has {len(getattr(request, field))} values; a row of job "
                        f"{job_id} has {values} ({'x'.join(map(str, fed.row_shape))})",
                        param=field,
                        status=422,
                    )
            row = FederatedClientRow(
                federation_id=fed.id,
                name=f"c{joined + 1}-{secrets.token_hex(3)}",
                key_id=key_id,
                state="active",
                examples=request.examples,
                statistics=request.model_dump(exclude={"examples"}),
                updates=0,
            )
            s.add(row)
            s.flush()
            return _view(s, job, fed, row)

    def view(self, job_id: int, client: str, key_id: str | None) -> ClientView:
        """What ``client`` is to do now; it is alive."""
        with self._sessions.begin() as s:
            job, fed = _job(s, job_id), _federation(s, job_id)
            if fed is None:
                raise _no_client(job_id, client)
            row = _client(s, job_id, fed, client, key_id)
            row.last_seen_at = utcnow()
            return _view(s, job, fed, row)

    def round_model(self, job_id: int, round: int) -> str:
        """The digest of the global weights of ``round``, which must be the open one."""
        with self._sessions.begin() as s:
            fed = _open_round(_job(s, job_id), _federation(s, job_id), round)
            assert fed.model_digest is not None
            return fed.model_digest

    def expect_update(
        self, job_id: int, round: int, client: str, key_id: str | None
    ) -> dict[str, list[int]]:
        """The tensors (name: shape) ``client`` sends for ``round``, if it may send now."""
        with self._sessions.begin() as s:
            fed = _open_round(_job(s, job_id), _federation(s, job_id), round)
            _may_send(s, job_id, fed, _client(s, job_id, fed, client, key_id), round)
            return {name: list(shape) for name, shape in fed.layout.items()}

    def add_update(
        self,
        job_id: int,
        round: int,
        client: str,
        key_id: str | None,
        *,
        digest: str,
        examples: int,
        metrics: dict[str, float],
    ) -> UpdateReceipt:
        with self._sessions.begin() as s:
            fed = _open_round(_job(s, job_id), _federation(s, job_id), round)
            row = _client(s, job_id, fed, client, key_id)
            _may_send(s, job_id, fed, row, round)
            s.add(
                FederatedUpdateRow(
                    federation_id=fed.id,
                    round=round,
                    client_id=row.id,
                    digest=digest,
                    examples=examples,
                    metrics=metrics,
                )
            )
            row.updates += 1
            row.last_seen_at = utcnow()
            s.flush()
            answered = _answered(s, fed.id, round)
            return UpdateReceipt(client=client, round=round, examples=examples, answered=answered)

    def unused(self, digests: set[str]) -> set[str]:
        """Which of ``digests`` nothing references (call it holding the registry's lock)."""
        with self._sessions.begin() as s:
            return _unused(s, digests)

    # -- the coordinator's side ----------------------------------------------------------

    def start(
        self,
        job_id: int,
        *,
        layout: dict[str, list[int]],
        row_shape: list[int],
        classes: list[str] | None,
        deadline: datetime,
    ) -> None:
        """Open the federation to clients (a restarted coordinator keeps those that joined)."""
        with self._sessions.begin() as s:
            fed = _federation(s, job_id)
            if fed is None:
                fed = FederationRow(job_id=job_id, round=0, selected=[], model_digest=None)
                s.add(fed)
            fed.stage = "waiting" if fed.round == 0 else "training"
            fed.layout, fed.row_shape, fed.classes = layout, row_shape, classes
            fed.deadline_at = deadline

    def clients(self, job_id: int) -> list[ClientRecord]:
        with self._sessions.begin() as s:
            fed = _federation(s, job_id)
            if fed is None:
                return []
            rows = s.scalars(
                select(FederatedClientRow)
                .where(FederatedClientRow.federation_id == fed.id)
                .order_by(FederatedClientRow.id)
            )
            return [
                ClientRecord(r.name, r.state, r.examples, r.statistics, as_utc(r.last_seen_at))
                for r in rows
            ]

    def open_round(
        self,
        job_id: int,
        round: int,
        *,
        digest: str,
        lr: float,
        selected: list[str],
        deadline: datetime,
    ) -> set[str]:
        """Open ``round`` on the global weights ``digest``; the blobs now unused (the last
        round's weights, updates a restarted coordinator will not read)."""
        with self._sessions.begin() as s:
            fed = _federation(s, job_id)
            assert fed is not None
            stale = {fed.model_digest} if fed.model_digest else set()
            stale |= _drop_updates(s, fed.id, FederatedUpdateRow.round != round)
            fed.stage, fed.round, fed.lr = "training", round, lr
            fed.model_digest, fed.selected, fed.deadline_at = digest, selected, deadline
            s.flush()
            return _unused(s, stale - {digest})

    def updates(self, job_id: int, round: int) -> list[UpdateRecord]:
        with self._sessions.begin() as s:
            fed = _federation(s, job_id)
            assert fed is not None
            rows = s.execute(
                select(FederatedClientRow.name, FederatedUpdateRow)
                .join(FederatedClientRow, FederatedClientRow.id == FederatedUpdateRow.client_id)
                .where(
                    FederatedUpdateRow.federation_id == fed.id, FederatedUpdateRow.round == round
                )
                .order_by(FederatedUpdateRow.id)
            ).all()
            return [UpdateRecord(name, u.digest, u.examples, u.metrics) for name, u in rows]

    def close_round(self, job_id: int, round: int, dropped: list[str]) -> set[str]:
        """The round's updates are read: forget them, drop the clients that did not answer;
        the blobs now unused."""
        with self._sessions.begin() as s:
            fed = _federation(s, job_id)
            assert fed is not None
            for row in s.scalars(
                select(FederatedClientRow).where(
                    FederatedClientRow.federation_id == fed.id,
                    FederatedClientRow.name.in_(dropped),
                )
            ):
                row.state = "dropped"
            stale = _drop_updates(s, fed.id, FederatedUpdateRow.round == round)
            fed.selected = []
            s.flush()
            return _unused(s, stale)

    def end(self, job_id: int, stage: str) -> set[str]:
        """The federation is over (``done`` or ``failed``); the blobs now unused."""
        with self._sessions.begin() as s:
            fed = _federation(s, job_id)
            if fed is None:
                return set()
            stale = {fed.model_digest} if fed.model_digest else set()
            stale |= _drop_updates(s, fed.id, FederatedUpdateRow.round >= 0)
            fed.stage, fed.model_digest, fed.selected, fed.deadline_at = stage, None, [], None
            s.flush()
            return _unused(s, stale)


def _job(s: Session, job_id: int) -> JobRow:
    job = s.get(JobRow, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found", param="job")
    if job.kind != "federated":
        raise Conflict(
            f"job {job_id} is a {job.kind} job; these routes are for federated jobs with real "
            "clients (strategy federated, simulate false)",
            param="job",
        )
    return job


def _federation(s: Session, job_id: int) -> FederationRow | None:
    return s.scalar(select(FederationRow).where(FederationRow.job_id == job_id))


def _running(job: JobRow, fed: FederationRow | None) -> FederationRow:
    if job.state in FINISHED:
        raise Conflict(f"job {job.id} already {job.state}", param="job")
    if fed is None or fed.stage not in ("waiting", "training"):
        raise Conflict(
            f"job {job.id} has not started yet; join once its stage is waiting", param="job"
        )
    return fed


def _open_round(job: JobRow, fed: FederationRow | None, round: int) -> FederationRow:
    fed = _running(job, fed)
    if fed.stage != "training" or fed.round != round:
        now = f"the open round is {fed.round}" if fed.stage == "training" else "no round is open"
        raise Conflict(f"round {round} of job {job.id} is not open; {now}", param="round")
    return fed


def _client(
    s: Session, job_id: int, fed: FederationRow, name: str, key_id: str | None
) -> FederatedClientRow:
    row = s.scalar(
        select(FederatedClientRow).where(
            FederatedClientRow.federation_id == fed.id, FederatedClientRow.name == name
        )
    )
    if row is None:
        raise _no_client(job_id, name)
    if row.key_id != key_id:
        raise Forbidden(f"client '{name}' joined job {job_id} with another API key")
    return row


def _no_client(job_id: int, name: str) -> NotFound:
    return NotFound(f"job {job_id} has no client '{name}'", param="client")


def _may_send(s: Session, job_id: int, fed: FederationRow, row: FederatedClientRow, r: int) -> None:
    if row.state == "dropped":
        raise Conflict(
            f"client '{row.name}' was dropped from job {job_id}: it missed a round", param="client"
        )
    if row.name not in fed.selected:
        raise Conflict(
            f"client '{row.name}' joined after round {r} opened; it takes part from the next",
            param="client",
        )
    sent = s.scalar(
        select(func.count(FederatedUpdateRow.id)).where(
            FederatedUpdateRow.federation_id == fed.id,
            FederatedUpdateRow.round == r,
            FederatedUpdateRow.client_id == row.id,
        )
    )
    if sent:
        raise Conflict(f"client '{row.name}' already sent its update for round {r}", param="round")


def _count(s: Session, table: Any, federation_id: int, *where: Any) -> int:
    query = select(func.count(table.id)).where(table.federation_id == federation_id, *where)
    return int(s.scalar(query) or 0)


def _answered(s: Session, federation_id: int, round: int) -> int:
    return _count(s, FederatedUpdateRow, federation_id, FederatedUpdateRow.round == round)


def _drop_updates(s: Session, federation_id: int, which: Any) -> set[str]:
    where = (FederatedUpdateRow.federation_id == federation_id, which)
    digests = set(s.scalars(select(FederatedUpdateRow.digest).where(*where)))
    s.execute(delete(FederatedUpdateRow).where(*where))
    return digests


def _unused(s: Session, digests: set[str]) -> set[str]:
    """Which of ``digests`` nothing uses: no model, dataset or checkpoint, and no
    federation (two jobs of one spec and seed share their first round's weights)."""
    digests = unreferenced(s, digests)
    if not digests:
        return digests
    used = set(
        s.scalars(select(FederationRow.model_digest).where(FederationRow.model_digest.in_(digests)))
    )
    used |= set(
        s.scalars(select(FederatedUpdateRow.digest).where(FederatedUpdateRow.digest.in_(digests)))
    )
    return digests - used


def _stage(job: JobRow, fed: FederationRow | None) -> str:
    if job.state in FINISHED:
        return "done" if job.state == "succeeded" else "failed"
    return "queued" if fed is None else fed.stage


def _status(s: Session, job: JobRow, fed: FederationRow | None) -> FederationStatus:
    spec = job.spec
    joined = active = answered = 0
    if fed is not None:
        joined = _count(s, FederatedClientRow, fed.id)
        active = _count(s, FederatedClientRow, fed.id, FederatedClientRow.state == "active")
        answered = _answered(s, fed.id, fed.round) if fed.stage == "training" else 0
    return FederationStatus(
        job=job.id,
        job_state=job.state,
        stage=_stage(job, fed),  # type: ignore[arg-type]
        round=fed.round if fed else 0,
        rounds=int(spec.get("rounds", 1)),
        clients=int(spec.get("clients", 1)),
        min_clients=int(spec.get("min_clients") or spec.get("clients", 1)),
        joined=joined,
        active=active,
        answered=answered,
        deadline=as_utc(fed.deadline_at) if fed and fed.deadline_at else None,
        round_timeout_s=float(spec.get("round_timeout_s", 300.0)),
        local_epochs=int(spec.get("local_epochs", 1)),
        lr=fed.lr if fed and fed.lr else float(spec.get("lr", 0.0)),
        proximal_mu=float(spec.get("proximal_mu", 0.0)),
        target=str(spec.get("target", "")),
        task=str(spec.get("task", "")),
        features=spec.get("features"),
        row_shape=list(fed.row_shape) if fed else [],
        classes=fed.classes if fed else None,
        spec=spec,
    )


def _view(s: Session, job: JobRow, fed: FederationRow, row: FederatedClientRow) -> ClientView:
    status = _status(s, job, fed)
    action = "wait"
    if status.stage in ("done", "failed"):
        action = "done"
    elif row.state == "dropped":
        action = "dropped"
    elif fed.stage == "training" and row.name in fed.selected:
        sent = _count(
            s,
            FederatedUpdateRow,
            fed.id,
            FederatedUpdateRow.round == fed.round,
            FederatedUpdateRow.client_id == row.id,
        )
        action = "wait" if sent else "train"
    return ClientView(
        client=row.name,
        action=action,  # type: ignore[arg-type]
        round=fed.round,
        updates=row.updates,
        status=status,
    )


def deadline_in(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)
