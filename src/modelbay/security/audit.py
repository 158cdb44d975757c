"""An append-only, keyed hash chain of audit events in the registry database.

Each event's hash is an HMAC-SHA256, under a key kept outside the database, of its fields
and the previous event's hash: editing, deleting or reordering a stored event breaks the
chain from that point, and without the key nobody can compute a chain that fits again.
``verify`` names the first event that no longer fits. The newest (seq, hash) is also kept
outside the database, so a truncated log is detected too. Events carry who, what, on which
target, the result and the client's address; never request payloads or secrets.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import logging
import os
import secrets
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
log = logging.getLogger("modelbay.security")


@dataclass(frozen=True)
class ChainKey:
    """The HMAC key of the chain, and the first event chained with it (events before it
    were written by a release whose chain was unkeyed, and stay plain SHA-256)."""

    key: bytes
    since: int

    def for_event(self, seq: int) -> bytes | None:
        return self.key if seq >= self.since else None


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
    key: bytes | None,
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
    """HMAC-SHA256 under ``key`` (plain SHA-256 without one) of the canonical JSON of an
    event and the previous event's hash."""
    body = orjson.dumps(
        [prev_hash, seq, as_utc(at).isoformat(), actor, action, target, result, client, details],
        option=orjson.OPT_SORT_KEYS,
    )
    if key is None:
        return hashlib.sha256(body).hexdigest()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def load_chain_key(path: Path, next_seq: int) -> ChainKey:
    """The key in ``path``, or a new one written there (0600) that chains from
    ``next_seq`` on; several frontends starting at once end up with the same key."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_chain_key(path)
    key = ChainKey(secrets.token_bytes(32), next_seq)
    with os.fdopen(fd, "w") as f:
        f.write(f"{base64.b64encode(key.key).decode()} {key.since}\n")
    log.info("created the audit chain key in %s; back it up with the database", path)
    return key


def _read_chain_key(path: Path) -> ChainKey:
    try:
        encoded, since = path.read_text().split()
        return ChainKey(base64.b64decode(encoded, validate=True), int(since))
    except (OSError, ValueError) as exc:
        raise ValueError(f"audit key file '{path}' cannot be read: {exc}") from None


class AuditLog:
    """Appends events and checks the chain; safe to share between threads.

    The chain is keyed with the key in ``key_file`` (created when missing). The newest
    (seq, hash) is also written to ``head_file``; it only moves forward from an event
    still in the database as written, so deleting or rewriting the newest events, even
    with events appended after, is detected.
    """

    def __init__(self, engine: Engine, head_file: Path | None = None, key_file: Path | None = None):
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._lock = threading.Lock()
        self._head_file = head_file
        self._key = None if key_file is None else load_chain_key(key_file, self._last_seq() + 1)

    def _last_seq(self) -> int:
        with self._sessions.begin() as s:
            return s.scalar(select(AuditRow.seq).order_by(AuditRow.seq.desc()).limit(1)) or 0

    def _key_for(self, seq: int) -> bytes | None:
        return None if self._key is None else self._key.for_event(seq)

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
            digest = event_hash(
                self._key_for(seq), prev, seq, at, actor, action, target, result, client, details
            )
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
        self._advance_head(seq, digest)
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
        head = self._read_head()
        with self._sessions.begin() as s:
            for row in s.scalars(
                select(AuditRow).order_by(AuditRow.seq).execution_options(yield_per=1000)
            ):
                problem = self._check(row, prev, expected_seq, head)
                if problem is not None:
                    return AuditReport(False, checked, problem[0], problem[1])
                prev, expected_seq, checked = row.hash, row.seq + 1, checked + 1
        if head is not None and head[0] > checked:
            return AuditReport(
                False,
                checked,
                checked + 1,
                f"the log ends at event {checked} but event {head[0]} was written",
            )
        return AuditReport(True, checked)

    def _check(
        self, row: AuditRow, prev: str, expected_seq: int, head: tuple[int, str] | None
    ) -> tuple[int, str] | None:
        """(seq, reason) of what is wrong with ``row`` as the chain's next event, if anything."""
        if row.seq != expected_seq:
            return expected_seq, f"event {expected_seq} is missing"
        if row.prev_hash != prev:
            return row.seq, f"event {row.seq} does not follow event {row.seq - 1}"
        digest = event_hash(
            self._key_for(row.seq),
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
        if not hmac.compare_digest(digest, row.hash):
            return row.seq, f"event {row.seq} was altered after it was written"
        if head is not None and row.seq == head[0] and row.hash != head[1]:
            return row.seq, f"event {row.seq} is not the event that was written"
        return None

    def _advance_head(self, seq: int, digest: str) -> None:
        """Move the head to ``seq`` if the event it names now is still as written; a log
        cut short (or rewritten) behind the head leaves it there for ``verify`` to find.
        Frontends of one data directory take turns (a lock file next to the head)."""
        if self._head_file is None:
            return
        lock = os.open(self._head_file.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._advance_head_locked(seq, digest)
        finally:
            os.close(lock)  # releases the lock

    def _advance_head_locked(self, seq: int, digest: str) -> None:
        head = self._read_head()
        if head is not None:
            if head[0] >= seq:
                return  # another frontend wrote a newer event meanwhile
            with self._sessions.begin() as s:
                found = s.scalar(select(AuditRow.hash).where(AuditRow.seq == head[0]))
            if found != head[1]:
                log.error(
                    "audit log: event %d is no longer as written; the head stays there", head[0]
                )
                return
        self._write_head(seq, digest)

    def _write_head(self, seq: int, digest: str) -> None:
        if self._head_file is None:
            return
        tmp = self._head_file.with_suffix(f".{os.getpid()}.tmp")
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
