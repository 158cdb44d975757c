"""Every control-plane change through the API lands in the audit log, failures included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from tests.integration import http
from tests.integration.conftest import RunningServer


def test_changes_and_refusals_are_audited_with_target_result_and_client(
    server: RunningServer,
) -> None:
    url = server.url
    assert http.post(f"{url}/api/v1/models", json={"name": "audited"}).status_code == 201
    assert http.post(f"{url}/api/v1/models", json={"name": "audited"}).status_code == 409
    put = http.put(f"{url}/api/v1/models/audited/aliases/prod", json={"version": 1})
    assert put.status_code == 404
    assert http.delete(f"{url}/api/v1/models/audited").status_code == 204
    assert http.get(f"{url}/api/v1/models").status_code == 200  # reads are not audited

    events = http.get(f"{url}/api/v1/audit", params={"limit": 4}).json()["events"]
    seen = [(e["action"], e["target"], e["result"]) for e in reversed(events)]
    assert seen == [
        ("management.create_model", {"name": "audited"}, 201),
        ("management.create_model", {"name": "audited"}, 409),
        ("management.set_alias", {"name": "audited", "alias": "prod"}, 404),
        ("management.delete_model", {"name": "audited"}, 204),
    ]
    assert all(e["client"] == "127.0.0.1" for e in events)
    verified = http.get(f"{url}/api/v1/audit/verify").json()
    assert verified["ok"] is True
    assert verified["checked"] >= 4


def test_answers_carry_security_headers(server: RunningServer) -> None:
    for response in (
        http.get(f"{server.url}/api/v1/models"),
        http.get(f"{server.url}/v2/models/nope"),
        http.post(f"{server.url}/v2/models/nope/infer", json={"inputs": []}),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"


def test_cli_lists_and_verifies_the_audit_log(server: RunningServer) -> None:
    http.post(f"{server.url}/api/v1/models", json={"name": "audited-cli"})
    env = {**os.environ, "MODELBAY_URL": server.url}
    run = [sys.executable, "-m", "modelbay", "audit"]
    listed = subprocess.run(
        [*run, "list", "--json", "--limit", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    [event] = json.loads(listed.stdout)
    assert event["action"] == "management.create_model"
    verified = subprocess.run([*run, "verify"], capture_output=True, text=True, env=env, timeout=60)
    assert verified.returncode == 0, verified.stderr
    assert "intact" in verified.stdout


def test_a_flood_of_bad_keys_is_audited_as_a_few_events_and_one_summary(
    tmp_path: Path,
) -> None:
    # Every refused key wrote an audit row under one lock: a flood of them, a flood of rows.
    running = RunningServer(
        tmp_path / "data",
        tmp_path / "log",
        env={
            "MODELBAY_AUDIT_REFUSALS_WINDOW_S": "2",
            "MODELBAY_AUDIT_REFUSALS_PER_CLIENT": "5",
            "MODELBAY_AUDIT_REFUSALS_TOTAL": "100",
            "MODELBAY_USAGE_FLUSH_INTERVAL_S": "0.2",
        },
    )
    running.start()
    try:
        with httpx.Client(base_url=running.url) as client:
            codes = {
                client.get(
                    "/api/v1/models", headers=http.auth(f"mb_{i:012x}_{'x' * 40}")
                ).status_code
                for i in range(120)
            }
        assert codes == {401}

        def held_back() -> list[dict[str, Any]]:
            events = http.get(f"{running.url}/api/v1/audit", params={"limit": 1000}).json()
            return [e for e in events["events"] if e["action"] == "auth.denied.held_back"]

        deadline = time.monotonic() + 20
        while not held_back():
            assert time.monotonic() < deadline, "no summary of the held-back refusals"
            time.sleep(0.1)
        events = http.get(f"{running.url}/api/v1/audit", params={"limit": 1000}).json()["events"]
        one_by_one = [e for e in events if e["action"] == "auth.denied"]
        (summary,) = held_back()
        assert len(one_by_one) == 5  # one client's share of a window
        assert summary["details"]["held_back"] == 115
        assert summary["details"]["top_clients"] == {"127.0.0.1": 115}
        assert http.get(f"{running.url}/api/v1/audit/verify").json()["ok"]
    finally:
        running.stop()
