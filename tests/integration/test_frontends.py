"""``modelbay serve --workers 2``: two frontend processes on one port act as one server.

Every request here opens a new connection, so the kernel hands it to either frontend.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from tests.integration import http
from tests.integration.conftest import RunningServer, cmdline_of
from tests.integration.http import ADMIN_KEY
from tests.integration.models import BuiltModel, build_onnx, iris
from tests.integration.test_deployments import metric, wait_for
from tests.integration.test_one_inference_path import _children


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("frontends")
    running = RunningServer(root / "data", root / "server.log", workers=2)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> BuiltModel:
    return build_onnx(tmp_path_factory.mktemp("frontends-model"))


def leader_pid(server: RunningServer) -> int:
    leader: dict[str, Any] = json.loads((server.data_dir / "run" / "leader.json").read_text())
    return int(leader["pid"])


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def body(x: np.ndarray) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}
        ]
    }


def infer(server: RunningServer, name: str, x: np.ndarray, key: str = ADMIN_KEY) -> httpx.Response:
    # httpx.post opens a new connection each time: any frontend may take it.
    return httpx.post(
        f"{server.url}/v2/models/{name}/infer", json=body(x), headers=http.auth(key), timeout=30
    )


def test_one_frontend_leads_and_both_serve_through_its_replicas(
    two: RunningServer, model: BuiltModel
) -> None:
    pids = two.frontends()
    assert len(pids) == 2
    assert leader_pid(two) in pids
    zygotes = {
        pid: [c for c in _children(pid) if b"serving.zygote" in cmdline_of(c)] for pid in pids
    }
    assert [pid for pid, z in zygotes.items() if z] == [leader_pid(two)], zygotes

    two.push("fe-model", model.path)
    response = http.post(
        f"{two.url}/api/v1/deployments", json={"model": "fe-model", "min_replicas": 1}
    )
    assert response.status_code == 201, response.text
    before = {pid: cpu_ticks(pid) for pid in pids}
    x = iris()[0][:4].astype(np.float32)
    for _ in range(150):
        answer = infer(two, "fe-model", x)
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(
            np.asarray(answer.json()["outputs"][0]["data"]).reshape(4, -1),
            model.reference(x),
            rtol=1e-4,
        )
    assert all(cpu_ticks(pid) > before[pid] for pid in pids), "one frontend served nothing"
    status = http.get(f"{two.url}/api/v1/deployments/fe-model").json()["status"]
    assert [v["replicas"] for v in status["versions"]] == [1]
    # Metrics add up both frontends' requests, whichever answers /metrics.
    assert metric(two, "modelbay_requests_total", model="fe-model", status="200") == 150
    assert http.delete(f"{two.url}/api/v1/deployments/fe-model").status_code == 204


def test_a_revoked_key_is_refused_by_every_frontend_at_once(
    two: RunningServer, model: BuiltModel
) -> None:
    two.push("fe-revoke", model.path)
    created = http.post(
        f"{two.url}/api/v1/keys", json={"name": "fe-user", "role": "consumer", "tenant": "default"}
    ).json()
    x = iris()[0][:1].astype(np.float32)
    for _ in range(20):  # both frontends cache the key
        assert infer(two, "fe-revoke", x, created["secret"]).status_code == 200
    revoked = http.delete(f"{two.url}/api/v1/keys/{created['key_id']}")
    assert revoked.status_code in (200, 204), revoked.text
    codes = [infer(two, "fe-revoke", x, created["secret"]).status_code for _ in range(20)]
    assert set(codes) == {401}, codes


def test_a_rate_limit_and_a_daily_quota_hold_for_the_server_not_per_frontend(
    two: RunningServer, model: BuiltModel
) -> None:
    two.push("fe-limits", model.path)
    x = iris()[0][:1].astype(np.float32)
    slow = http.post(
        f"{two.url}/api/v1/keys",
        json={"name": "fe-slow", "role": "consumer", "tenant": "default", "rate_limit_rps": 0.05},
    ).json()["secret"]
    codes = [infer(two, "fe-limits", x, slow).status_code for _ in range(12)]
    # One request a 20 s: the burst of one, then 429 whichever frontend answers (each
    # frontend holding its own bucket would let one through per frontend).
    assert codes.count(200) == 1, codes
    assert set(codes) == {200, 429}, codes

    daily = http.post(
        f"{two.url}/api/v1/keys",
        json={"name": "fe-daily", "role": "consumer", "tenant": "default", "daily_quota": 3},
    ).json()["secret"]
    codes = [infer(two, "fe-limits", x, daily).status_code for _ in range(12)]
    assert codes.count(200) == 3, codes


def test_when_the_leader_dies_the_server_recovers(two: RunningServer, model: BuiltModel) -> None:
    two.push("fe-leader", model.path)
    x = iris()[0][:2].astype(np.float32)
    assert infer(two, "fe-leader", x).status_code == 200
    old = leader_pid(two)
    os.kill(old, signal.SIGKILL)  # its zygote and replicas die with it
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, "no frontend took the lead again"
        try:
            if leader_pid(two) != old and infer(two, "fe-leader", x).status_code == 200:
                break
        except (httpx.TransportError, FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.2)
    wait_for(lambda: len(two.frontends()) == 2, timeout=30)  # uvicorn restarted the dead one
    codes = [infer(two, "fe-leader", x).status_code for _ in range(20)]
    assert set(codes) == {200}, codes


def test_a_stopping_server_logs_no_traceback(tmp_path: Path) -> None:
    # Python 3.11's asyncio logged the leader's cancelled follower connection as an
    # "Unhandled exception in client_connected_cb" with a CancelledError traceback.
    running = RunningServer(tmp_path / "data", tmp_path / "server.log", workers=2)
    running.start()
    try:
        wait_for(lambda: _followers_connected(tmp_path / "data") == 1)
    finally:
        running.stop()
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    assert "ERROR" not in log, log[-3000:]


def _followers_connected(data_dir: Path) -> int:
    """Connections the leader accepted on the control socket it published (/proc/net/unix
    lists them with the socket's path, in state 03, connected)."""
    try:
        control = json.loads((data_dir / "run" / "leader.json").read_text())["control"]
    except FileNotFoundError:
        return 0
    return sum(
        1
        for line in Path("/proc/net/unix").read_text().splitlines()[1:]
        if line.split()[5] == "03" and line.endswith(" " + control)
    )
