"""``GET /api/v1/deployments/{name}/stats``: a deployment's cumulative counters (requests,
latency, batch sizes, queue wait) for anyone who may read it, summed over the frontends."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from tests.integration import http
from tests.integration.conftest import RunningServer, upload
from tests.integration.models import SKLEARN_INFER_BODY, build_sklearn


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Deployed:
    def __init__(self, server: RunningServer, tenant: str, developer: str, name: str):
        self.server, self.tenant, self.developer, self.name = server, tenant, developer, name

    def stats(self, key: str | None = None) -> dict[str, Any]:
        response = self.get(key)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def get(self, key: str | None = None, name: str | None = None) -> httpx.Response:
        return httpx.get(
            f"{self.server.url}/api/v1/deployments/{name or self.name}/stats",
            headers=http.auth(key or self.developer),
        )


@pytest.fixture(scope="module")
def deployed(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    """A model of a tenant of its own, deployed with batching, undeployed at the end."""
    tenant = unique("stats")
    developer = server.key("developer", tenant)
    name = unique("stats-model")
    model = build_sklearn(tmp_path_factory.mktemp("stats"))
    pushed = upload(server.url, name, model.path, headers=http.auth(developer))
    assert pushed.status_code == 201, pushed.text
    created = httpx.post(
        f"{server.url}/api/v1/deployments",
        json={"model": name, "max_batch_size": 8, "max_queue_delay_ms": 5},
        headers=http.auth(developer),
    )
    assert created.status_code == 201, created.text
    deadline = time.monotonic() + 60
    while True:
        status = http.get(f"{server.url}/api/v1/deployments/{name}").json()["status"]
        if status["state"] == "ready":
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    yield Deployed(server, tenant, developer, name)
    http.delete(f"{server.url}/api/v1/deployments/{name}")


def _metric_total(server: RunningServer, name: str, model: str) -> float:
    total = 0.0
    for line in http.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(name + "{") and f'model="{model}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_counters_grow_by_the_inferences_sent_on_every_frontend(deployed: Deployed) -> None:
    before = deployed.stats()
    assert before["deployment"] == before["model"] == deployed.name
    sent = 24
    url = f"{deployed.server.url}/v2/models/{deployed.name}/infer"

    def infer(_: int) -> int:
        answer = httpx.post(url, json=SKLEARN_INFER_BODY, headers=http.auth(deployed.developer))
        return answer.status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(infer, range(sent))) == {200}

    # Each read may land on either frontend process: every one reports the same totals.
    reads = [deployed.stats() for _ in range(6)]
    for after in reads:
        assert after["requests"].get("200", 0) - before["requests"].get("200", 0) == sent
        latency = after["latency_seconds"]
        assert latency["count"] - before["latency_seconds"]["count"] == sent
        assert latency["cumulative"][-1] <= latency["count"]
        assert latency["cumulative"] == sorted(latency["cumulative"])  # cumulative buckets
        assert latency["sum"] > before["latency_seconds"]["sum"]
        assert latency["bounds"] == sorted(latency["bounds"])
        assert len(latency["bounds"]) == len(latency["cumulative"])
        batches = after["batch_size"]["count"] - before["batch_size"]["count"]
        assert 1 <= batches <= sent
        rows = after["batch_size"]["sum"] - before["batch_size"]["sum"]
        assert rows == sent  # one row per request, however they were batched
        assert after["queue_wait_seconds"]["count"] - before["queue_wait_seconds"]["count"] == sent
        assert after["collected_at"] >= before["collected_at"]
    # The same numbers as /metrics, which adds up the frontends the same way.
    requests = _metric_total(deployed.server, "modelbay_requests_total", deployed.name)
    assert requests == sum(reads[-1]["requests"].values())


def test_an_unknown_deployment_is_404(deployed: Deployed) -> None:
    response = deployed.get(name=unique("absent"))
    assert response.status_code == 404
    assert "not found" in response.json()["error"]


def test_a_viewer_of_the_tenant_reads_it_and_one_of_another_tenant_cannot(
    deployed: Deployed,
) -> None:
    own = deployed.server.key("viewer", deployed.tenant)
    assert deployed.get(own).status_code == 200
    stranger = deployed.server.key("viewer", unique("elsewhere"))
    hidden = deployed.get(stranger)
    assert hidden.status_code == 404
    assert hidden.json() == {"error": f"deployment '{deployed.name}' not found"}
    anonymous = httpx.get(f"{deployed.server.url}/api/v1/deployments/{deployed.name}/stats")
    assert anonymous.status_code == 401


def test_the_schema_documents_the_answer_and_the_404(server: RunningServer) -> None:
    schema = http.get(f"{server.url}/openapi.json").json()
    operation = schema["paths"]["/api/v1/deployments/{name}/stats"]["get"]
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/DeploymentStats"}
    assert "404" in operation["responses"]
    fields = schema["components"]["schemas"]["DeploymentStats"]["properties"]
    assert {"requests", "latency_seconds", "batch_size", "queue_wait_seconds"} <= set(fields)
