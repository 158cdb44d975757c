"""Every control-plane change through the API lands in the audit log, failures included."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
