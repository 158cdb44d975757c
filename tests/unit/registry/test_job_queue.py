"""The job queue's kinds: a worker claims what it has a slot for, and a search's trials
count as their search against the tenant's job limit."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from modelbay.errors import Overloaded
from modelbay.jobs.worker import Worker
from modelbay.registry import make_engine, migrate
from modelbay.registry.jobs import JobStore
from modelbay.registry.tables import TenantRow
from modelbay.security.keys import KeyStore
from modelbay.settings import Settings


@pytest.fixture
def store(tmp_path: Path) -> tuple[JobStore, int]:
    engine = make_engine(f"sqlite:///{tmp_path}/registry.db")
    migrate(engine)
    KeyStore(engine).create_tenant("team", max_jobs=1)
    with engine.begin() as conn:
        tenant = conn.execute(select(TenantRow.id).where(TenantRow.name == "team")).scalar_one()
    return JobStore(engine), tenant


def _submit(jobs: JobStore, tenant: int, kind: str = "train", **extra: Any) -> int:
    return jobs.submit(
        tenant_id=tenant,
        spec={},
        dataset="d",
        dataset_version=1,
        dataset_digest="0" * 64,
        model_name="m",
        deploy=False,
        created_by=None,
        kind=kind,
        **extra,
    ).id


def test_a_claim_takes_the_oldest_job_of_the_kinds_asked_for(
    store: tuple[JobStore, int],
) -> None:
    jobs, tenant = store
    training = _submit(jobs, tenant)
    # max_jobs 1: a second top-level job is refused, a trial of the first is not.
    with pytest.raises(Overloaded):
        _submit(jobs, tenant, "search")
    trial = _submit(jobs, tenant, parent_id=training)
    assert jobs.get(trial).parent == training
    assert jobs.claim("w", 30, kinds=("search", "federated")) is None
    claimed = jobs.claim("w", 30, kinds=("train",))
    assert claimed is not None
    assert claimed.job.id == training


def test_a_busy_worker_claims_only_coordinating_jobs_and_a_free_one_anything(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, job_coordinators=1)
    worker = Worker(settings, name="w")
    idle = threading.Thread()
    assert set(worker._claimable()) == {"train", "search", "federated"}
    worker._running[1] = ("train", idle)
    assert set(worker._claimable()) == {"search", "federated"}
    worker._running[2] = ("search", idle)
    assert worker._claimable() == ()  # the training slot and the one coordinator slot
    del worker._running[1]
    assert worker._claimable() == ("train",)
