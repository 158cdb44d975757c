"""Deployments on the real server: batching, admission control, replicas, rolls, scaling."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from tests.integration import http
from tests.integration.conftest import RunningServer
from tests.integration.http import ADMIN_KEY
from tests.integration.models import (
    BuiltModel,
    build_onnx,
    build_spinning_torchscript,
    build_two_inputs_onnx,
    iris,
)
from tests.processes import gone


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> BuiltModel:
    return build_onnx(tmp_path_factory.mktemp("deploy"))


def deploy(server: RunningServer, model: str, **fields: Any) -> dict[str, Any]:
    """Create a deployment and wait until the controller has placed it (replicas may be 0)."""
    r = http.post(f"{server.url}/api/v1/deployments", json={"model": model, **fields})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    wait_for(lambda: bool(status(server, model)["versions"]))
    return body


@pytest.fixture
def deployed(server: RunningServer) -> Iterator[Callable[..., dict[str, Any]]]:
    """``deploy`` on the shared server, undeployed when the test ends (so no test leaves
    replicas running for the ones after it)."""
    names: list[str] = []

    def make(model: str, **fields: Any) -> dict[str, Any]:
        names.append(model)
        return deploy(server, model, **fields)

    yield make
    for name in names:
        http.delete(f"{server.url}/api/v1/deployments/{name}")


def status(server: RunningServer, name: str) -> dict[str, Any]:
    body: dict[str, Any] = http.get(f"{server.url}/api/v1/deployments/{name}").json()["status"]
    return body


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def ready_replicas(server: RunningServer, name: str, version: int | None = None) -> int:
    versions = status(server, name)["versions"]
    return sum(v["replicas"] for v in versions if version is None or v["version"] == version)


def request(x: np.ndarray) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}
        ]
    }


def infer(client: httpx.Client, name: str, x: np.ndarray, ref: str | None = None) -> httpx.Response:
    path = f"/v2/models/{name}/infer" if ref is None else f"/v2/models/{name}/versions/{ref}/infer"
    return client.post(path, json=request(x))


def metric(server: RunningServer, name: str, **labels: str) -> float:
    total = 0.0
    for line in http.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_batched_outputs_are_identical_to_unbatched(
    server: RunningServer, onnx_model: BuiltModel, deployed: Callable[..., dict[str, Any]]
) -> None:
    server.push("batched", onnx_model.path)
    deployed("batched", max_batch_size=16, max_queue_delay_ms=20)
    wait_for(lambda: ready_replicas(server, "batched") == 1)
    x = iris()[0].astype(np.float32)
    slices = [x[i : i + 1 + i % 3] for i in range(48)]  # requests of 1-3 rows each

    with http.client(base_url=server.url) as client, ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda s: infer(client, "batched", s), slices))
    for part, response in zip(slices, responses, strict=True):
        assert response.status_code == 200, response.text
        out = response.json()["outputs"][0]
        assert out["shape"] == [len(part), 3]
        got = np.array(out["data"], dtype=np.float32).reshape(out["shape"])
        np.testing.assert_allclose(got, onnx_model.reference(part), atol=1e-5)
    batches = metric(server, "modelbay_batch_size_count", model="batched")
    assert batches < len(slices)  # requests shared batches


def test_full_queue_answers_429_with_retry_after_and_deadline_504(
    server: RunningServer, onnx_model: BuiltModel, deployed: Callable[..., dict[str, Any]]
) -> None:
    server.push("admission", onnx_model.path)
    # Scaled to zero: the first requests wait in the queue through a cold start.
    deploy(
        server,
        "admission",
        min_replicas=0,
        max_replicas=1,
        queue_capacity=2,
        max_batch_size=1,
        request_timeout_ms=20_000,
    )
    x = iris()[0][:1].astype(np.float32)
    with http.client(base_url=server.url, timeout=60) as client, ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: infer(client, "admission", x), range(8)))
    codes = Counter(r.status_code for r in responses)
    assert set(codes) <= {200, 429}, codes
    assert codes[429] >= 1, codes
    assert codes[200] >= 1, codes
    refused = next(r for r in responses if r.status_code == 429)
    assert int(refused.headers["Retry-After"]) >= 1
    assert "overloaded" in refused.json()["error"]

    server.push("deadline", onnx_model.path)
    deployed("deadline", min_replicas=0, request_timeout_ms=1)
    response = infer(http.client(base_url=server.url, timeout=60), "deadline", x)
    assert response.status_code == 504, response.text
    assert "timeout" in response.json()["error"]


def test_killed_replica_is_replaced_and_no_request_hangs(
    server: RunningServer, onnx_model: BuiltModel, deployed: Callable[..., dict[str, Any]]
) -> None:
    server.push("crashy", onnx_model.path)
    deployed("crashy", min_replicas=2, max_replicas=2)
    wait_for(lambda: ready_replicas(server, "crashy") == 2)
    victim = status(server, "crashy")["versions"][0]["pids"][0]
    x = iris()[0][:4].astype(np.float32)
    codes: Counter[int] = Counter()
    stop = threading.Event()

    def hammer() -> None:
        with http.client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                codes[infer(client, "crashy", x).status_code] += 1

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: codes.total() >= 20)  # under load
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: ready_replicas(server, "crashy") == 2, timeout=5)
    replaced_in = time.monotonic() - killed_at
    answered = codes.total()
    wait_for(lambda: codes.total() >= answered + 20)  # and served by the replacement too
    stop.set()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive(), "a request hung"
    assert set(codes) <= {200, 503}, codes
    assert codes[200] > 0
    assert replaced_in < 5
    assert victim not in status(server, "crashy")["versions"][0]["pids"]
    assert metric(server, "modelbay_replica_restarts_total", model="crashy") == 1


def test_alias_roll_fails_no_request(
    server: RunningServer, onnx_model: BuiltModel, deployed: Callable[..., dict[str, Any]]
) -> None:
    server.push("rolling", onnx_model.path)
    server.push("rolling", onnx_model.path)
    http.put(f"{server.url}/api/v1/models/rolling/aliases/production", json={"version": 1})
    deployed("rolling", version="production")
    wait_for(lambda: ready_replicas(server, "rolling", 1) == 1)
    x = iris()[0][:2].astype(np.float32)
    seen: list[tuple[int, str]] = []
    stop = threading.Event()

    def hammer() -> None:
        with http.client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                r = infer(client, "rolling", x)
                version = r.json().get("model_version", "") if r.status_code == 200 else ""
                seen.append((r.status_code, version))

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    wait_for(lambda: len(seen) >= 20)  # under load
    http.put(f"{server.url}/api/v1/models/rolling/aliases/production", json={"version": 2})
    wait_for(lambda: any(v == "2" for _, v in seen[-5:]), timeout=30)
    wait_for(lambda: sum(v == "2" for _, v in seen) >= 20)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert {code for code, _ in seen} == {200}
    assert {v for _, v in seen} == {"1", "2"}
    wait_for(lambda: [v["version"] for v in status(server, "rolling")["versions"]] == [2])


def test_canary_split_sends_traffic_to_both_versions(
    server: RunningServer, onnx_model: BuiltModel, deployed: Callable[..., dict[str, Any]]
) -> None:
    server.push("canary", onnx_model.path)
    server.push("canary", onnx_model.path)
    deployed("canary", version="1", canary_version="2", canary_weight=30)
    wait_for(lambda: ready_replicas(server, "canary") == 2)
    x = iris()[0][:1].astype(np.float32)
    with http.client(base_url=server.url) as client:
        versions = Counter(infer(client, "canary", x).json()["model_version"] for _ in range(300))
    assert set(versions) == {"1", "2"}
    assert 0.15 < versions["2"] / 300 < 0.45, versions
    with http.client(base_url=server.url) as client:
        assert infer(client, "canary", x, ref="2").json()["model_version"] == "2"


def test_scale_up_down_and_to_zero_with_cold_start_measured(
    server: RunningServer, onnx_model: BuiltModel
) -> None:
    server.push("elastic", onnx_model.path)
    deploy(
        server,
        "elastic",
        min_replicas=0,
        max_replicas=2,
        target_inflight_per_replica=1,
        scale_up_delay_s=0,
        scale_down_delay_s=1,
        idle_to_zero_s=2,
        max_batch_size=1,
    )
    assert ready_replicas(server, "elastic") == 0
    assert http.get(f"{server.url}/v2/models/elastic/ready").status_code == 200
    x = iris()[0][:1].astype(np.float32)
    with http.client(base_url=server.url, timeout=60) as client:
        assert infer(client, "elastic", x).status_code == 200  # waits for a cold start
        assert metric(server, "modelbay_cold_starts_total", model="elastic") == 1
        assert metric(server, "modelbay_cold_start_seconds_count", model="elastic") == 1

        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                infer(client, "elastic", x)

        with ThreadPoolExecutor(8) as pool:
            for _ in range(8):
                pool.submit(hammer)
            try:
                wait_for(lambda: ready_replicas(server, "elastic") == 2, timeout=20)
            finally:
                stop.set()
    wait_for(lambda: ready_replicas(server, "elastic") == 0, timeout=20)


def test_deployments_come_back_after_a_restart(
    fresh_server: RunningServer, onnx_model: BuiltModel
) -> None:
    fresh_server.push("durable", onnx_model.path)
    deploy(fresh_server, "durable", max_batch_size=4)
    wait_for(lambda: ready_replicas(fresh_server, "durable") == 1)
    fresh_server.restart()
    wait_for(lambda: ready_replicas(fresh_server, "durable") == 1)
    x = iris()[0][:3].astype(np.float32)
    with http.client(base_url=fresh_server.url) as client:
        response = infer(client, "durable", x)
    assert response.status_code == 200
    listed = http.get(f"{fresh_server.url}/api/v1/deployments").json()["deployments"]
    assert [(d["name"], d["config"]["max_batch_size"]) for d in listed] == [("durable", 4)]


def test_bad_deployments_are_refused_with_the_reason(
    server: RunningServer, onnx_model: BuiltModel, deployed: Callable[..., dict[str, Any]]
) -> None:
    server.push("refusals", onnx_model.path)
    url = f"{server.url}/api/v1/deployments"
    too_few = http.post(url, json={"model": "refusals", "min_replicas": 3, "max_replicas": 1})
    assert too_few.status_code == 422
    assert "min_replicas (3) exceeds max_replicas (1)" in too_few.json()["error"]
    missing = http.post(url, json={"model": "refusals", "version": "staging"})
    assert missing.status_code == 422  # the deployment's URL is fine; its body is not
    assert "version: model 'refusals' has no version or alias 'staging'" in missing.json()["error"]
    typo = http.post(url, json={"model": "refusals", "max_batch": 8})
    assert typo.status_code == 422
    assert "max_batch" in typo.json()["error"]
    instant = http.post(url, json={"model": "refusals", "request_timeout_ms": 5e-324})
    assert instant.status_code == 422  # every request would have been answered 504
    assert "request_timeout_ms" in instant.json()["error"]
    assert http.post(url, json={"model": "nope"}).status_code == 404
    assert http.get(f"{url}/refusals").status_code == 404

    deployed("refusals", version="1", min_replicas=0)
    assert http.post(url, json={"model": "refusals"}).status_code == 409
    canary = http.patch(f"{url}/refusals", json={"canary_version": "j"})
    assert canary.status_code == 422  # found by the fuzzer: a 404 read as "no deployment"
    assert canary.json()["error"].startswith("canary_version: ")
    pinned = http.delete(f"{server.url}/api/v1/models/refusals/versions/1")
    assert pinned.status_code == 409
    assert "deployment" in pinned.json()["error"]
    scaled = http.patch(f"{url}/refusals", json={"min_replicas": 5})
    assert scaled.status_code == 422
    assert http.delete(f"{url}/refusals").status_code == 204
    assert http.delete(f"{server.url}/api/v1/models/refusals/versions/1").status_code == 204


def test_the_last_version_of_a_model_deployed_at_latest_cannot_be_deleted(
    server: RunningServer, onnx_model: BuiltModel, deployed: Callable[..., dict[str, Any]]
) -> None:
    # It could: the deployment was left with no version to serve.
    server.push("follows-latest", onnx_model.path)
    deployed("follows-latest", min_replicas=0)
    versions = f"{server.url}/api/v1/models/follows-latest/versions"
    server.push("follows-latest", onnx_model.path)
    assert http.delete(f"{versions}/2").status_code == 204  # a rollback to version 1: fine
    last = http.delete(f"{versions}/1")
    assert last.status_code == 409, last.text
    assert last.json()["error"] == (
        "version 1 is the last version of 'follows-latest', and deployment 'follows-latest' "
        "serves its latest; undeploy it first"
    )
    assert http.delete(f"{server.url}/api/v1/deployments/follows-latest").status_code == 204
    assert http.delete(f"{versions}/1").status_code == 204


def test_request_of_a_client_that_left_is_never_run(
    server: RunningServer, onnx_model: BuiltModel, deployed: Callable[..., dict[str, Any]]
) -> None:
    server.push("walkaway", onnx_model.path)
    # A lone request waits up to 1.5 s for others to join its batch.
    deployed("walkaway", max_batch_size=64, max_queue_delay_ms=1500)
    wait_for(lambda: ready_replicas(server, "walkaway") == 1)
    body = json.dumps(request(iris()[0][:1].astype(np.float32))).encode()
    head = (
        f"POST /v2/models/walkaway/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {ADMIN_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head + body)
        wait_for(lambda: metric(server, "modelbay_queue_depth", model="walkaway") == 1)
    # Once its client is gone, the request is answered 499 and taken out of the queue.
    wait_for(lambda: metric(server, "modelbay_requests_total", model="walkaway", status="499") == 1)
    assert metric(server, "modelbay_queue_depth", model="walkaway") == 0
    assert metric(server, "modelbay_batch_size_count", model="walkaway") == 0
    with http.client(base_url=server.url) as client:  # the deployment still serves
        assert infer(client, "walkaway", iris()[0][:1].astype(np.float32)).status_code == 200


def test_inputs_with_different_row_counts_are_refused_with_400(
    server: RunningServer, tmp_path: Path, deployed: Callable[..., dict[str, Any]]
) -> None:
    # The signature passed them and the batcher's ValueError answered 500.
    server.push("two-inputs", build_two_inputs_onnx(tmp_path))
    deployed("two-inputs")
    tensors = [
        {"name": name, "datatype": "FP32", "shape": [rows, 2], "data": [0.0] * rows * 2}
        for name, rows in (("a", 2), ("b", 3))
    ]
    response = http.post(f"{server.url}/v2/models/two-inputs/infer", json={"inputs": tensors})
    assert response.status_code == 400, response.text
    assert "'a' has 2, 'b' has 3" in response.json()["error"]


def test_replica_workers_inherit_none_of_modelbays_settings(
    server: RunningServer, onnx_model: BuiltModel, deployed: Callable[..., dict[str, Any]]
) -> None:
    # Workers inherited MODELBAY_ADMIN_KEY and the database URL; a model needs neither.
    server.push("envless", onnx_model.path)
    deployed("envless", min_replicas=1)
    wait_for(lambda: ready_replicas(server, "envless") == 1)
    pid = status(server, "envless")["versions"][0]["pids"][0]
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    names = {entry.split(b"=", 1)[0].decode() for entry in raw if entry}
    assert "PATH" in names
    assert names.isdisjoint({"MODELBAY_ADMIN_KEY", "MODELBAY_LOG_LEVEL", "MODELBAY_API_KEY"})
    assert not [n for n in names if n.startswith("MODELBAY_")]


def test_deleting_a_deployed_model_stops_its_replicas_at_once(
    tmp_path: Path, onnx_model: BuiltModel
) -> None:
    # The controller learnt of it only at its next periodic reconcile (here a minute away).
    running = RunningServer(
        tmp_path / "data", tmp_path / "log", env={"MODELBAY_RECONCILE_INTERVAL_S": "60"}
    )
    running.start()
    try:
        running.push("doomed", onnx_model.path)
        deploy(running, "doomed", min_replicas=1)
        wait_for(lambda: ready_replicas(running, "doomed") == 1)
        pid = status(running, "doomed")["versions"][0]["pids"][0]
        assert http.delete(f"{running.url}/api/v1/models/doomed").status_code == 204
        wait_for(lambda: gone(pid), timeout=10)
        assert http.get(f"{running.url}/api/v1/deployments/doomed").status_code == 404
    finally:
        running.stop()


def test_a_wedged_replica_answers_503_at_the_timeout_and_is_replaced(
    server: RunningServer, tmp_path: Path, deployed: Callable[..., dict[str, Any]]
) -> None:
    # One request kept a TorchScript model busy for minutes despite a 3 s request timeout,
    # and its deployment answered nothing else meanwhile.
    model, signature = build_spinning_torchscript(tmp_path)
    server.push("wedge", model, signature=signature.read_text())
    deployed("wedge", min_replicas=1, max_batch_size=1, request_timeout_ms=1500)
    wait_for(lambda: ready_replicas(server, "wedge") == 1)
    (victim,) = status(server, "wedge")["versions"][0]["pids"]

    def spin(n: float) -> httpx.Response:
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [n]}]}
        return http.post(f"{server.url}/v2/models/wedge/infer", json=body, timeout=60)

    wedged = spin(1e9)
    assert wedged.status_code == 503, wedged.text
    assert "did not finish the batch within the request timeout" in wedged.json()["error"]
    assert int(wedged.headers["Retry-After"]) >= 1
    assert gone(victim)

    # The frontend that did not kill it learns of the exit a moment later (its reader sees
    # the socket close, or the leader's next list): until then it may still list the victim.
    def replaced() -> bool:
        pids = status(server, "wedge")["versions"][0]["pids"]
        return len(pids) == 1 and victim not in pids

    wait_for(replaced)
    answer = spin(2)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == [4.0]
    assert metric(server, "modelbay_replica_timeouts_total", model="wedge") == 1


def test_a_busy_replica_dies_with_its_frontend(tmp_path: Path) -> None:
    # A replica in a long model call never read the end of its socket: when the frontend
    # died it ran on, orphaned, holding a core.
    running = RunningServer(tmp_path / "data", tmp_path / "log")
    running.start()
    model, signature = build_spinning_torchscript(tmp_path)
    running.push("orphan", model, signature=signature.read_text())
    deploy(running, "orphan", min_replicas=1, max_batch_size=1, request_timeout_ms=600_000)
    wait_for(lambda: ready_replicas(running, "orphan") == 1)
    (replica,) = status(running, "orphan")["versions"][0]["pids"]
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [1e9]}]}
    with ThreadPoolExecutor(1) as pool:
        pool.submit(http.post, f"{running.url}/v2/models/orphan/infer", json=body, timeout=30)
        wait_for(lambda: metric(running, "modelbay_batch_size_count", model="orphan") == 1)
        assert running.process is not None
        running.process.kill()  # no drain, no goodbye
        running.process.wait()
        running.process = None
        wait_for(lambda: gone(replica), timeout=10)
