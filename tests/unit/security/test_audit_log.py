"""The hash-chained audit log: appends chain, and any edit, deletion or truncation shows."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, text

from modelbay.registry import make_engine, migrate
from modelbay.registry.tables import AuditRow
from modelbay.security.audit import AuditLog, event_hash


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    engine = make_engine(f"sqlite:///{tmp_path}/registry.db")
    migrate(engine)
    log = AuditLog(engine, head_file=tmp_path / "audit.head", key_file=tmp_path / "audit.key")
    _append(log, 5)
    return log


def _append(log: AuditLog, n: int, first: int = 0) -> None:
    for i in range(first, first + n):
        log.append(
            actor="k1",
            action="management.push_version",
            target={"name": f"m{i}"},
            result=201,
            client="127.0.0.1",
        )


def _sql(audit: AuditLog, statement: str) -> None:
    with audit._sessions.begin() as s:  # noqa: SLF001 - tampering is the point here
        s.execute(text(statement))


def test_appended_events_form_a_verifiable_chain(audit: AuditLog) -> None:
    events = audit.events(limit=10)
    assert [e.seq for e in events] == [5, 4, 3, 2, 1]
    assert events[-1].target == {"name": "m0"}
    report = audit.verify()
    assert report.ok
    assert report.checked == 5


def test_an_edited_event_is_named_by_verify(audit: AuditLog) -> None:
    _sql(audit, "UPDATE audit_log SET result = 200 WHERE seq = 3")
    report = audit.verify()
    assert not report.ok
    assert report.first_bad_seq == 3
    assert "altered" in (report.reason or "")


def test_a_deleted_event_breaks_the_chain(audit: AuditLog) -> None:
    _sql(audit, "DELETE FROM audit_log WHERE seq = 2")
    report = audit.verify()
    assert not report.ok
    assert report.first_bad_seq == 2


def test_deleting_the_newest_events_is_detected_by_the_head_file(audit: AuditLog) -> None:
    _sql(audit, "DELETE FROM audit_log WHERE seq >= 4")
    report = audit.verify()
    assert not report.ok
    assert report.first_bad_seq == 4
    assert "event 5 was written" in (report.reason or "")


def test_paging_back_from_a_sequence_number(audit: AuditLog) -> None:
    assert [e.seq for e in audit.events(limit=2, before=4)] == [3, 2]


def _rewrite_chain_and_append_one(log: AuditLog, key: bytes | None) -> None:
    """The attack: edit event 2, recompute every hash after it with ``key``, append an
    event 6 that fits, all straight in the database."""
    with log._sessions.begin() as s:  # noqa: SLF001 - tampering is the point here
        rows = list(s.scalars(select(AuditRow).order_by(AuditRow.seq)))
        rows[1].result = 500
        last = rows[-1]
        forged = AuditRow(
            seq=6,
            at=last.at,
            actor="attacker",
            action="cover.up",
            target={},
            result=200,
            client=None,
            details={},
            prev_hash="",
            hash="",
        )
        s.add(forged)
        prev = rows[0].hash
        for row in [*rows[1:], forged]:
            row.prev_hash = prev
            row.hash = event_hash(
                key,
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
            prev = row.hash


def test_a_rewritten_chain_with_one_more_event_fails_verify(audit: AuditLog) -> None:
    # Without the key the attacker can only compute the unkeyed hashes of the old chain.
    _rewrite_chain_and_append_one(audit, None)
    report = audit.verify()
    assert not report.ok
    assert report.first_bad_seq == 2
    assert "altered" in (report.reason or "")


def test_without_the_key_the_head_still_catches_a_rewritten_chain(tmp_path: Path) -> None:
    # An unkeyed chain (as written before the key) can be recomputed; the head file, checked
    # at its own sequence number, still names the newest event that was really written.
    engine = make_engine(f"sqlite:///{tmp_path}/registry.db")
    migrate(engine)
    log = AuditLog(engine, head_file=tmp_path / "audit.head")
    _append(log, 5)
    _rewrite_chain_and_append_one(log, None)
    report = log.verify()
    assert not report.ok
    assert report.first_bad_seq == 5
    assert "not the event that was written" in (report.reason or "")


def test_a_truncated_log_stays_detected_after_new_events(audit: AuditLog) -> None:
    _sql(audit, "DELETE FROM audit_log WHERE seq >= 4")
    _append(audit, 3, first=10)  # the server goes on: events 4, 5 and 6 again
    report = audit.verify()
    assert not report.ok
    assert report.first_bad_seq == 5
    assert "not the event that was written" in (report.reason or "")


def test_the_key_is_created_private_and_shared_by_every_log_on_it(
    audit: AuditLog, tmp_path: Path
) -> None:
    key_file = tmp_path / "audit.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    other = AuditLog(
        make_engine(f"sqlite:///{tmp_path}/registry.db"),
        head_file=tmp_path / "audit.head",
        key_file=key_file,
    )
    _append(other, 2, first=5)  # a second frontend on the same database and key
    assert audit.verify().ok
    assert audit.verify().checked == 7


def test_a_chain_begun_unkeyed_is_keyed_from_the_next_event(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/registry.db"
    engine = make_engine(url)
    migrate(engine)
    _append(AuditLog(engine, head_file=tmp_path / "audit.head"), 3)  # an older release
    keyed = AuditLog(engine, head_file=tmp_path / "audit.head", key_file=tmp_path / "audit.key")
    _append(keyed, 2, first=3)
    assert (tmp_path / "audit.key").read_text().split()[1] == "4"
    report = keyed.verify()
    assert report.ok, report
    assert report.checked == 5
