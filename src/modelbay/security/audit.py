"""An append-only, hash-chained audit log in the registry database.

Each event's hash covers its fields and the previous event's hash, so editing, deleting
or reordering any stored event breaks the chain from that point, and ``verify`` names
the first event that no longer fits. Events carry who, what, on which target, the
result, and the client's address; never request payloads or secrets.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from modelbay.registry.tables import AuditRow, as_utc, utcnow

GENESIS = "0" * 64


class AuditEvent(BaseModel):
    """An audit event as stored and served."""

    seq: int
    at: datetime
    actor: str
    action: str
    target: dict[str, Any]
    result: int
    client: str | None
    details: dict[str, Any]
    hash: str


@dataclass
class AuditReport:
    """Outcome of ``verify``: how many events were checked and the first bad one."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str | None = None


def event_hash(
    prev_hash: str,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    target: dict[str, Any],
    result: int,
    client: str | None,
    details: dict[str, Any],
) -> str:
    """sha256 over the canonical JSON of an event and the previous event's hash."""
    body = orjson.dumps(
        [prev_hash, seq, as_utc(at).isoformat(), actor, action, target, result, client, details],
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(body).hexdigest()


class AuditLog:
    """Appends events and checks the chain; safe to share between threads.

    The newest (seq, hash) is also written to ``head_file`` outside the database, so
    deleting the newest events, which leaves a shorter but valid chain, is detected too.
    """

    def __init__(self, engine: Engine, head_file: Path | None = None):
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._lock = threading.Lock()
        self._head_file = head_file

    def append(
        self,
        *,
        actor: str,
        action: str,
        target: dict[str, Any],
        result: int,
        client: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditEvent:
        """Add an event after the newest one (retried if another writer got there first)."""
        details = details or {}
        with self._lock:
            for _ in range(10):
                try:
                    return self._append(actor, action, target, result, client, details)
                except IntegrityError:
                    continue  # another frontend appended the same seq; chain onto it
        raise RuntimeError("could not append to the audit log after 10 tries")

    def _append(
        self,
        actor: str,
        action: str,
        target: dict[str, Any],
        result: int,
        client: str | None,
        details: dict[str, Any],
    ) -> AuditEvent:
        with self._sessions.begin() as s:
            last = s.scalar(select(AuditRow).order_by(AuditRow.seq.desc()).limit(1))
            seq = 1 if last is None else last.seq + 1
            prev = GENESIS if last is None else last.hash
            at = utcnow()
            digest = event_hash(prev, seq, at, actor, action, target, result, client, details)
            row = AuditRow(
                seq=seq,
                at=at,
                actor=actor,
                action=action,
                target=target,
                result=result,
                client=client,
                details=details,
                prev_hash=prev,
                hash=digest,
            )
            s.add(row)
            s.flush()
        self._write_head(seq, digest)
        return _event(row)

    def events(self, *, limit: int = 100, before: int | None = None) -> list[AuditEvent]:
        """Newest first; ``before`` pages back from a sequence number."""
        with self._sessions.begin() as s:
            query = select(AuditRow).order_by(AuditRow.seq.desc()).limit(limit)
            if before is not None:
                query = query.where(AuditRow.seq < before)
            return [_event(r) for r in s.scalars(query)]

    def verify(self) -> AuditReport:
        """Recompute the chain from the first event; the first mismatch is reported."""
        prev, expected_seq, checked = GENESIS, 1, 0
        with self._sessions.begin() as s:
            for row in s.scalars(
                select(AuditRow).order_by(AuditRow.seq).execution_options(yield_per=1000)
            ):
                if row.seq != expected_seq:
                    return AuditReport(
                        False, checked, expected_seq, f"event {expected_seq} is missing"
                    )
                if row.prev_hash != prev:
                    return AuditReport(
                        False,
                        checked,
                        row.seq,
                        f"event {row.seq} does not follow event {row.seq - 1}",
                    )
                digest = event_hash(
                    prev,
                    row.seq,
                    row.at,
                    row.actor,
                    row.action,
                    row.target,
                    row.result,
                    row.client,
                    row.details,
                )
                if digest != row.hash:
                    return AuditReport(
                        False, checked, row.seq, f"event {row.seq} was altered after it was written"
                    )
                prev, expected_seq, checked = row.hash, row.seq + 1, checked + 1
        head = self._read_head()
        if head is not None and (head[0] > checked or (head[0] == checked and head[1] != prev)):
            return AuditReport(
                False,
                checked,
                checked + 1,
                f"the log ends at event {checked} but event {head[0]} was written",
            )
        return AuditReport(True, checked)

    def _write_head(self, seq: int, digest: str) -> None:
        if self._head_file is None:
            return
        tmp = self._head_file.with_suffix(".tmp")
        tmp.write_text(f"{seq} {digest}\n")
        os.replace(tmp, self._head_file)

    def _read_head(self) -> tuple[int, str] | None:
        if self._head_file is None or not self._head_file.exists():
            return None
        seq, digest = self._head_file.read_text().split()
        return int(seq), digest


def _event(row: AuditRow) -> AuditEvent:
    return AuditEvent(
        seq=row.seq,
        at=as_utc(row.at),
        actor=row.actor,
        action=row.action,
        target=row.target,
        result=row.result,
        client=row.client,
        details=row.details,
        hash=row.hash,
    )
