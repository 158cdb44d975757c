"""The SDK's deployment calls against a mock transport: bodies, paths, waiting for replicas."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from modelbay.client import ApiError, Client
from modelbay.client import deployments as deployment_calls


@pytest.fixture(autouse=True)
def _fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deployment_calls, "POLL_INTERVAL_S", 0.001)


def version(number: int, replicas: int, role: str = "primary", error: str | None = None) -> Any:
    return {
        "version": number,
        "role": role,
        "replicas": replicas,
        "pids": list(range(replicas)),
        "starting": 0 if replicas else 1,
        "desired": 1,
        "queued": 0,
        "error": error,
    }


def status(state: str, *versions: Any, error: str | None = None) -> dict[str, Any]:
    return {"state": state, "error": error, "versions": list(versions)}


def record(status: dict[str, Any], **fields: Any) -> dict[str, Any]:
    config = {"min_replicas": fields.pop("min_replicas", 1), "max_replicas": 1}
    base = {"name": "m", "model": "m", "target": "latest", "canary_target": None}
    return {**base, "canary_weight": 0, "config": config, "status": status, **fields}


class FakeServer:
    """Answers the deployment's GETs with ``statuses`` in turn (the last one repeats)."""

    def __init__(
        self, *statuses: dict[str, Any], versions: dict[str, int] | None = None, **fields: Any
    ):
        self.statuses = list(statuses)
        self.fields = fields
        self.versions = versions or {"latest": 1}
        self.requests: list[httpx.Request] = []

    def client(self) -> Client:
        return Client("http://mb.test", transport=httpx.MockTransport(self.handle))

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path.startswith("/api/v1/models/m/versions/"):
            return httpx.Response(200, json={"version": self.versions[path.rsplit("/", 1)[1]]})
        current = self.statuses[0] if len(self.statuses) == 1 else self.statuses.pop(0)
        answer = 201 if request.method == "POST" else 200
        return httpx.Response(answer, json=record(current, **self.fields))

    def sent(self, method: str) -> Iterator[Any]:
        return (json.loads(r.content) for r in self.requests if r.method == method)

    def gets(self) -> int:
        return sum(
            r.method == "GET" and r.url.path == "/api/v1/deployments/m" for r in self.requests
        )


def test_deploy_posts_string_versions_and_only_the_settings_given() -> None:
    server = FakeServer(status("pending"))
    deployed = server.client().deploy(
        "m", 3, canary_version="staging", canary_weight=10, max_batch_size=8, wait=False
    )
    assert deployed["status"]["state"] == "pending"
    assert list(server.sent("POST")) == [
        {
            "model": "m",
            "version": "3",
            "canary_version": "staging",
            "canary_weight": 10,
            "max_batch_size": 8,
        }
    ]
    assert server.requests[0].url.path == "/api/v1/deployments"
    assert server.gets() == 0


def test_deploy_waits_until_every_version_has_a_ready_replica() -> None:
    server = FakeServer(
        status("pending"),
        status("ready", version(1, 0)),
        status("ready", version(1, 0)),
        status("ready", version(1, 1)),
    )
    deployed = server.client().deploy("m")
    assert deployed["status"]["versions"][0]["replicas"] == 1
    assert next(server.sent("POST")) == {"model": "m", "version": "latest", "canary_weight": 0}
    assert server.gets() == 3


def test_deploy_that_may_scale_to_zero_is_done_once_its_version_is_placed() -> None:
    server = FakeServer(status("pending"), status("ready", version(1, 0)), min_replicas=0)
    deployed = server.client().deploy("m", min_replicas=0)
    assert deployed["status"]["versions"][0]["replicas"] == 0
    assert server.gets() == 1


def test_deployment_error_raises_503_with_the_servers_reason() -> None:
    failed = status("error", error="version 'prod' of model 'm' not found")
    server = FakeServer(status("pending"), failed)
    with pytest.raises(ApiError) as info:
        server.client().deploy("m", "prod")
    assert info.value.status == 503
    assert info.value.message.startswith(
        "deployment 'm' failed: version 'prod' of model 'm' not found"
    )


def test_wait_times_out_with_504_naming_each_versions_progress() -> None:
    server = FakeServer(status("ready", version(1, 0, error="replica exited with code 1")))
    with pytest.raises(ApiError) as info:
        server.client().deploy("m", timeout=0.05)
    assert info.value.status == 504
    assert "not serving after 0.05 s" in info.value.message
    assert "version 1 (primary) 0/1 replicas, last error: replica exited with code 1" in (
        info.value.message
    )


def test_update_with_wait_returns_once_the_new_target_has_rolled_in() -> None:
    old, new = status("ready", version(1, 1)), status("ready", version(2, 1))
    server = FakeServer(old, old, new, target="2", versions={"2": 2})
    updated = server.client().update_deployment("m", version=2, wait=True)
    assert [v["version"] for v in updated["status"]["versions"]] == [2]
    assert list(server.sent("PATCH")) == [{"version": "2"}]
    assert server.gets() == 2


def test_wait_expects_the_canary_next_to_the_primary() -> None:
    primary_only = status("ready", version(1, 1))
    both = status("ready", version(1, 1), version(2, 1, role="canary"))
    server = FakeServer(
        primary_only, primary_only, both, canary_target="next", versions={"latest": 1, "next": 2}
    )
    deployed = server.client().deploy("m", canary_version="next", canary_weight=5)
    assert {v["role"] for v in deployed["status"]["versions"]} == {"primary", "canary"}
    assert server.gets() == 2


def test_update_without_wait_sends_an_empty_canary_to_remove_it() -> None:
    server = FakeServer(status("ready", version(1, 1)))
    server.client().update_deployment("m", canary_version="", max_queue_delay_ms=5.0)
    assert list(server.sent("PATCH")) == [{"canary_version": "", "max_queue_delay_ms": 5.0}]
    assert server.gets() == 0


def test_scale_patches_only_the_bounds_given() -> None:
    server = FakeServer(status("ready", version(1, 1)))
    client = server.client()
    client.scale("m", max_replicas=3)
    client.scale("m", min_replicas=0, max_replicas=2)
    assert list(server.sent("PATCH")) == [
        {"max_replicas": 3},
        {"min_replicas": 0, "max_replicas": 2},
    ]


def test_list_get_and_undeploy_use_the_deployment_paths() -> None:
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.raw_path.decode()))
        if request.method == "DELETE":
            return httpx.Response(204)
        if request.url.path == "/api/v1/deployments":
            return httpx.Response(200, json={"deployments": [{"name": "a b"}]})
        return httpx.Response(200, json={"name": "a b"})

    client = Client("http://mb.test", transport=httpx.MockTransport(handler))
    assert client.list_deployments() == [{"name": "a b"}]
    assert client.get_deployment("a b") == {"name": "a b"}
    client.undeploy("a b")
    assert seen == [
        ("GET", "/api/v1/deployments"),
        ("GET", "/api/v1/deployments/a%20b"),
        ("DELETE", "/api/v1/deployments/a%20b"),
    ]


def test_deploying_twice_surfaces_the_servers_conflict() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        message = "model 'm' is already deployed; change the deployment or undeploy it"
        return httpx.Response(409, json={"error": message})

    client = Client("http://mb.test", transport=httpx.MockTransport(handler))
    with pytest.raises(ApiError, match="already deployed") as info:
        client.deploy("m")
    assert info.value.status == 409
