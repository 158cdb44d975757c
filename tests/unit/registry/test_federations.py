"""A federation's rows: clients join and answer rounds; closing a round forgets its updates
and drops the silent; and every blob is given up once nothing, in any job, still uses it."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelbay.errors import Conflict, Forbidden, InvalidRequest, NotFound
from modelbay.protocols.federated import JoinRequest
from modelbay.registry import make_engine, migrate
from modelbay.registry.federated import FederationStore, deadline_in
from modelbay.registry.jobs import JobStore
from modelbay.registry.tables import DEFAULT_TENANT_ID

SPEC = {"strategy": "federated", "clients": 2, "min_clients": 1, "rounds": 2, "lr": 0.01}
STATS = JoinRequest(examples=10, feature_sum=[1.0, 2.0], feature_sum_sq=[3.0, 4.0])
A, B, U = "a" * 64, "b" * 64, "c" * 64


@pytest.fixture
def stores(tmp_path: Path) -> tuple[JobStore, FederationStore]:
    engine = make_engine(f"sqlite:///{tmp_path}/registry.db")
    migrate(engine)
    return JobStore(engine), FederationStore(engine)


def _job(jobs: JobStore, federations: FederationStore, kind: str = "federated") -> int:
    job = jobs.submit(
        tenant_id=DEFAULT_TENANT_ID,
        spec=SPEC,
        dataset="d",
        dataset_version=1,
        dataset_digest="0" * 64,
        model_name="m",
        deploy=False,
        created_by="key",
        kind=kind,
    ).id
    if kind == "federated":
        federations.start(
            job, layout={"w": [2]}, row_shape=[2], classes=None, deadline=deadline_in(60)
        )
    return job


def test_a_round_is_answered_closed_and_its_update_blobs_given_up(
    stores: tuple[JobStore, FederationStore],
) -> None:
    jobs, federations = stores
    job = _job(jobs, federations)
    first = federations.join(job, "key-1", STATS).client
    second = federations.join(job, "key-2", STATS).client
    with pytest.raises(Conflict, match="has its 2 clients"):
        federations.join(job, "key-3", STATS)
    assert federations.view(job, first, "key-1").action == "wait"
    federations.open_round(
        job, 1, digest=A, lr=0.01, selected=[first, second], deadline=deadline_in(60)
    )
    assert federations.view(job, first, "key-1").action == "train"
    assert federations.round_model(job, 1) == A
    with pytest.raises(Conflict, match="round 2 of job .* is not open; the open round is 1"):
        federations.expect_update(job, 2, first, "key-1")
    with pytest.raises(Forbidden, match="another API key"):
        federations.expect_update(job, 1, first, "key-2")
    with pytest.raises(NotFound, match="has no client 'c9-000000'"):
        federations.view(job, "c9-000000", "key-1")
    receipt = federations.add_update(job, 1, first, "key-1", digest=U, examples=10, metrics={})
    assert receipt.answered == 1
    with pytest.raises(Conflict, match="already sent its update for round 1"):
        federations.expect_update(job, 1, first, "key-1")
    assert [u.client for u in federations.updates(job, 1)] == [first]

    assert federations.close_round(job, 1, dropped=[second]) == {U}
    assert federations.view(job, second, "key-2").action == "dropped"
    assert federations.open_round(
        job, 2, digest=B, lr=0.005, selected=[first], deadline=deadline_in(60)
    ) == {A}
    assert federations.status(job).lr == 0.005
    assert federations.end(job, "done") == {B}
    assert federations.view(job, first, "key-1").action == "done"


def test_a_blob_another_federation_uses_is_kept(stores: tuple[JobStore, FederationStore]) -> None:
    jobs, federations = stores
    one, two = _job(jobs, federations), _job(jobs, federations)
    for job in (one, two):  # one spec and seed: the same first global model
        federations.open_round(job, 1, digest=A, lr=0.01, selected=[], deadline=deadline_in(60))
    assert federations.end(one, "done") == set()
    assert federations.end(two, "done") == {A}


def test_other_jobs_and_unknown_ones_are_refused(stores: tuple[JobStore, FederationStore]) -> None:
    jobs, federations = stores
    plain = _job(jobs, federations, kind="train")
    with pytest.raises(Conflict, match="is a train job"):
        federations.status(plain)
    with pytest.raises(NotFound, match="job 99 not found"):
        federations.status(99)
    queued = jobs.submit(
        tenant_id=DEFAULT_TENANT_ID,
        spec=SPEC,
        dataset="d",
        dataset_version=1,
        dataset_digest="0" * 64,
        model_name="m",
        deploy=False,
        created_by="key",
        kind="federated",
    ).id
    assert federations.status(queued).stage == "queued"
    with pytest.raises(Conflict, match="has not started yet"):
        federations.join(queued, "key", STATS)
    short = JoinRequest(examples=1, feature_sum=[1.0], feature_sum_sq=[1.0])
    started = _job(jobs, federations)
    with pytest.raises(InvalidRequest, match="feature_sum has 1 values; a row of job .* has 2"):
        federations.join(started, "key", short)
