"""A search's trials in the job queue: the model a finished trial keeps stays referenced while
its search runs and is released when the search ends; an ending search cancels its trials."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from modelbay.registry import make_engine, migrate
from modelbay.registry.jobs import Claimed, JobStore
from modelbay.registry.tables import JobRow

DIGEST = "ab" * 32


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[JobStore]:
    engine = make_engine(f"sqlite:///{tmp_path}/registry.db")
    migrate(engine)
    yield JobStore(engine)
    engine.dispose()


def _submit(jobs: JobStore, **extra: Any) -> int:
    job = jobs.submit(
        tenant_id=1,
        spec={},
        dataset="d",
        dataset_version=1,
        dataset_digest="cd" * 32,
        model_name="m",
        deploy=False,
        created_by=None,
        **extra,
    )
    return job.id


def _claim(jobs: JobStore, kind: str) -> Claimed:
    claimed = jobs.claim("w", 30.0, kinds=(kind,))
    assert claimed is not None
    return claimed


def _kept(jobs: JobStore, job_id: int) -> str | None:
    with jobs.sessions.begin() as s:
        return s.scalar(select(JobRow.checkpoint_digest).where(JobRow.id == job_id))


def test_a_trial_keeps_its_model_until_its_search_ends(jobs: JobStore) -> None:
    search = _submit(jobs, kind="search")
    lease = _claim(jobs, "search")
    trial = _submit(jobs, parent_id=search, result={"trial": 0})
    assert jobs.get(trial).parent == search
    assert jobs.get(trial).result == {"trial": 0}
    assert [j.id for j in jobs.list_jobs(parent=search)] == [trial]
    child = _claim(jobs, "train")
    held, stale = jobs.finish(trial, child.token, "succeeded", result={"trial": 0}, keep=DIGEST)
    assert held
    assert stale == set()
    assert _kept(jobs, trial) == DIGEST
    held, stale = jobs.finish(search, lease.token, "succeeded")
    assert stale == {DIGEST}  # no row uses it now
    assert _kept(jobs, trial) is None


def test_release_kept_spares_the_best_trial_and_a_digest_another_trial_holds(
    jobs: JobStore,
) -> None:
    search = _submit(jobs, kind="search")
    _claim(jobs, "search")
    for number, digest in enumerate([DIGEST, DIGEST, "ef" * 32]):
        trial = _submit(jobs, parent_id=search, result={"trial": number})
        child = _claim(jobs, "train")
        jobs.finish(trial, child.token, "succeeded", keep=digest)
    best = trial - 1  # holds DIGEST, as trial - 2 does (trained alike: the same bytes)
    assert jobs.release_kept(search, keep_job=best) == {"ef" * 32}
    assert _kept(jobs, best) == DIGEST


def test_a_trial_ending_after_its_search_keeps_nothing(jobs: JobStore) -> None:
    search = _submit(jobs, kind="search")
    lease = _claim(jobs, "search")
    trial = _submit(jobs, parent_id=search, result={"trial": 0})
    child = _claim(jobs, "train")
    jobs.finish(search, lease.token, "failed", error="boom")
    assert jobs.get(trial).cancel_requested  # running: asked to stop
    held, stale = jobs.finish(trial, child.token, "succeeded", keep=DIGEST)
    assert held
    assert stale == {DIGEST}
    assert _kept(jobs, trial) is None


def test_cancelling_a_queued_search_cancels_its_trials(jobs: JobStore) -> None:
    search = _submit(jobs, kind="search")
    lease = _claim(jobs, "search")
    queued = _submit(jobs, parent_id=search, result={"trial": 0})
    jobs.release(search, lease.token, "its worker stopped")  # the search waits again
    assert jobs.cancel(search).state == "cancelled"
    assert jobs.get(queued).state == "cancelled"


def test_trials_do_not_count_against_max_jobs(jobs: JobStore) -> None:
    from sqlalchemy import update

    from modelbay.registry.tables import TenantRow

    with jobs.sessions.begin() as s:
        s.execute(update(TenantRow).where(TenantRow.id == 1).values(max_jobs=1))
    search = _submit(jobs, kind="search")
    for number in range(3):
        _submit(jobs, parent_id=search, result={"trial": number})
    assert len(jobs.list_jobs(parent=search)) == 3
