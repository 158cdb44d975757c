"""The batching loop and replica pool around fake replicas: batching, retries, admission."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import numpy as np
import pytest
from tests.unit.serving.fakes import FakeReplica, fake_factory

from modelbay.errors import DeadlineExceeded, ModelNotReady, Overloaded
from modelbay.registry import DeploymentConfig, FileEntry, VersionRecord
from modelbay.serving.messages import ReplicaSpec
from modelbay.serving.metrics import ServingMetrics
from modelbay.serving.pool import ReplicaBudget, ReplicaPool
from modelbay.serving.version_server import VersionServer
from modelbay.tensors import Signature

pytestmark = pytest.mark.anyio

SIG = Signature.parse(
    {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
    }
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def record(version: int = 1) -> VersionRecord:
    return VersionRecord(
        model="m",
        version=version,
        format="onnx",
        entrypoint="m.onnx",
        files=[FileEntry(path="m.onnx", digest="0" * 64, size=1)],
        signature=SIG,
        description="",
        metadata={},
        metrics={},
        source={},
        tags={},
        aliases=[],
        created_by=None,
        created_at=datetime.now(UTC),
    )


async def server(budget: int = 8, **config: object) -> VersionServer:
    cfg = DeploymentConfig.model_validate(config)
    spec = ReplicaSpec(record(), "/nonexistent", 1)
    metrics = ServingMetrics()
    pool = ReplicaPool("m", spec, fake_factory, metrics, ReplicaBudget(budget))  # type: ignore[arg-type]
    vs = VersionServer(record(), cfg, pool, metrics)
    vs.start()
    assert await pool.wait_ready(5)
    return vs


async def test_concurrent_requests_share_batches_and_get_their_own_rows() -> None:
    vs = await server(max_batch_size=8, max_queue_delay_ms=20)
    inputs = [np.full((1 + i % 2, 2), i, np.float32) for i in range(12)]
    results = await asyncio.gather(*(vs.submit({"x": x}, None) for x in inputs))
    for x, out in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(out["y"], x * 2)
    replica = vs.pool.ready[0]
    assert isinstance(replica, FakeReplica)
    assert len(replica.batches) < len(inputs)
    assert max(replica.batches) <= 8
    await vs.drain_and_close()


async def test_batch_on_a_dying_replica_is_retried_on_another() -> None:
    vs = await server(min_replicas=2, max_replicas=2, max_batch_size=1)
    await vs.pool.wait_ready(5)
    while len(vs.pool.ready) < 2:
        await asyncio.sleep(0.01)
    first = vs.pool.ready[0]
    assert isinstance(first, FakeReplica)
    first.die_next = True
    first.delay_s = 0.01
    x = np.ones((1, 2), np.float32)
    outs = await asyncio.gather(*(vs.submit({"x": x}, None) for _ in range(4)))
    assert all(np.array_equal(o["y"], x * 2) for o in outs)
    while len(vs.pool.ready) < 2:  # the dead one is replaced
        await asyncio.sleep(0.01)
    assert first not in vs.pool.ready
    await vs.drain_and_close()


async def test_full_queue_raises_overloaded_with_retry_after() -> None:
    vs = await server(max_batch_size=1, queue_capacity=1)
    replica = vs.pool.ready[0]
    assert isinstance(replica, FakeReplica)
    replica.delay_s = 0.2
    x = np.ones((1, 2), np.float32)
    tasks = [asyncio.ensure_future(vs.submit({"x": x}, None)) for _ in range(6)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    refused = [r for r in results if isinstance(r, Overloaded)]
    assert refused
    assert all(r.retry_after is not None and r.retry_after > 0 for r in refused)
    assert any(isinstance(r, dict) for r in results)
    await vs.drain_and_close()


async def test_request_past_its_deadline_is_answered_504_and_not_run() -> None:
    vs = await server(max_batch_size=1, request_timeout_ms=30)
    replica = vs.pool.ready[0]
    assert isinstance(replica, FakeReplica)
    replica.delay_s = 0.2
    x = np.ones((1, 2), np.float32)
    results = await asyncio.gather(
        *(vs.submit({"x": x}, None) for _ in range(4)), return_exceptions=True
    )
    assert any(isinstance(r, DeadlineExceeded) for r in results)
    assert len(replica.batches) < 4
    await vs.drain_and_close()


async def test_cancelled_request_never_reaches_a_replica() -> None:
    vs = await server(max_batch_size=4, max_queue_delay_ms=200)
    replica = vs.pool.ready[0]
    assert isinstance(replica, FakeReplica)
    task = asyncio.ensure_future(vs.submit({"x": np.ones((1, 2), np.float32)}, None))
    await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.sleep(0.3)
    assert replica.batches == []
    await vs.drain_and_close()


async def test_server_replica_limit_caps_what_a_deployment_gets() -> None:
    vs = await server(budget=2, min_replicas=4, max_replicas=4)
    while vs.pool.starting:
        await asyncio.sleep(0.01)
    assert len(vs.pool.ready) == 2
    assert vs.pool.short_of_budget == 2
    await vs.drain_and_close()
    assert vs.pool.budget.used == 0


async def test_a_wedged_replica_is_killed_at_the_timeout_and_replaced() -> None:
    # A running batch had no deadline: a replica that never answered hung its requests.
    vs = await server(max_batch_size=1, request_timeout_ms=100)
    wedged = vs.pool.ready[0]
    assert isinstance(wedged, FakeReplica)
    wedged.delay_s = 3600
    x = np.ones((1, 2), np.float32)
    with pytest.raises(ModelNotReady, match="did not finish the batch within") as refused:
        await asyncio.wait_for(vs.submit({"x": x}, None), 5)
    assert refused.value.status == 503
    assert refused.value.retry_after is not None
    assert wedged.killed
    while not vs.pool.ready:  # replaced
        await asyncio.sleep(0.01)
    assert wedged not in vs.pool.ready
    np.testing.assert_array_equal((await vs.submit({"x": x}, None))["y"], x * 2)
    await vs.drain_and_close()
