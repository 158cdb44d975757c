"""The hash-chained audit log: appends chain, and any edit, deletion or truncation shows."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from modelbay.registry import make_engine, migrate
from modelbay.security.audit import AuditLog


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    engine = make_engine(f"sqlite:///{tmp_path}/registry.db")
    migrate(engine)
    log = AuditLog(engine, head_file=tmp_path / "audit.head")
    for i in range(5):
        log.append(
            actor="k1",
            action="management.push_version",
            target={"name": f"m{i}"},
            result=201,
            client="127.0.0.1",
        )
    return log


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
