"""The SDK's deployment calls: create, change and remove deployments, wait until they serve."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from modelbay.client.errors import ApiError

DEPLOYMENTS_PATH = "/api/v1/deployments"
POLL_INTERVAL_S = 0.2
WAIT_TIMEOUT_S = 300.0
FAILED_STATUS = 503
"""``ApiError.status`` when a deployment being waited for reports an error."""
TIMEOUT_STATUS = 504
"""``ApiError.status`` when a deployment is not serving before the wait's timeout."""

JsonCall = Callable[..., dict[str, Any]]
"""``(method, path, **httpx_kwargs)`` answering the response's JSON object."""
RequestCall = Callable[..., httpx.Response]
"""``(method, path, **httpx_kwargs)`` answering the successful response."""


class DeploymentCalls:
    """The /api/v1/deployments endpoints over a ``Client``'s request helpers."""

    def __init__(self, json: JsonCall, request: RequestCall) -> None:
        self._json = json
        self._request = request

    def create(self, body: Mapping[str, Any], *, wait: bool, timeout: float) -> dict[str, Any]:
        """POST a deployment; with ``wait``, the record once its replicas serve."""
        record = self._json("POST", DEPLOYMENTS_PATH, json=_wire(body))
        return self.wait_serving(record, timeout) if wait else record

    def update(
        self, name: str, fields: Mapping[str, Any], *, wait: bool, timeout: float = WAIT_TIMEOUT_S
    ) -> dict[str, Any]:
        """PATCH a deployment; with ``wait``, the record once the new state serves."""
        record = self._json("PATCH", deployment_path(name), json=_wire(fields))
        return self.wait_serving(record, timeout) if wait else record

    def delete(self, name: str) -> None:
        """DELETE a deployment."""
        self._request("DELETE", deployment_path(name))

    def list_all(self) -> list[dict[str, Any]]:
        """Every deployment with its live status."""
        doc = self._json("GET", DEPLOYMENTS_PATH)
        return [dict(item) for item in doc.get("deployments", [])]

    def get(self, name: str) -> dict[str, Any]:
        """One deployment with its live status."""
        return self._json("GET", deployment_path(name))

    def wait_serving(self, record: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Poll until ``record``'s deployment serves its targets (503 ``ApiError`` if it fails).

        Raises a 504 ``ApiError`` after ``timeout`` seconds, naming each version's progress.
        """
        name = str(record["name"])
        deadline = time.monotonic() + timeout
        while True:
            status = record.get("status") or {}
            if status.get("state") == "error":
                raise ApiError(
                    FAILED_STATUS,
                    f"deployment '{name}' failed: {status.get('error')} "
                    "(it stays until it is changed or undeployed)",
                )
            if replicas_ready(record) and self._on_targets(record):
                return record
            if time.monotonic() >= deadline:
                raise ApiError(
                    TIMEOUT_STATUS,
                    f"deployment '{name}' is not serving after {timeout:g} s: "
                    f"{progress_text(status)}",
                )
            time.sleep(POLL_INTERVAL_S)
            record = self.get(name)

    def _on_targets(self, record: Mapping[str, Any]) -> bool:
        # A changed target rolls in the background: the old version serves until the new is ready.
        model = str(record["model"])
        want = {(self._version_of(model, str(record["target"])), "primary")}
        if record.get("canary_target"):
            canary = self._version_of(model, str(record["canary_target"]))
            if (canary, "primary") not in want:
                want.add((canary, "canary"))
        running = {(int(v["version"]), str(v["role"])) for v in record["status"]["versions"]}
        return running == want

    def _version_of(self, model: str, target: str) -> int:
        path = "/".join(["/api/v1/models", quote(model, safe=""), "versions", quote(target)])
        return int(self._json("GET", path)["version"])


def deployment_path(name: str) -> str:
    """The API path of one deployment."""
    return f"{DEPLOYMENTS_PATH}/{quote(name, safe='')}"


def replicas_ready(record: Mapping[str, Any]) -> bool:
    """Whether the status is ready with a replica per version (or may scale to zero)."""
    status = record.get("status") or {}
    versions = status.get("versions") or []
    if status.get("state") != "ready" or not versions:
        return False
    if int(record.get("config", {}).get("min_replicas", 1)) == 0:
        return True
    return all(int(v["replicas"]) >= 1 for v in versions)


def progress_text(status: Mapping[str, Any]) -> str:
    """What a status says about each version: ready replicas of desired, and its last error."""
    versions = status.get("versions") or []
    if not versions:
        return f"{status.get('state', 'pending')}, no version started yet"
    parts = []
    for v in versions:
        text = f"version {v['version']} ({v['role']}) {v['replicas']}/{v['desired']} replicas"
        parts.append(text + (f", last error: {v['error']}" if v.get("error") else ""))
    return "; ".join(parts)


def deployment_changes(
    current: Mapping[str, Any], wanted: Mapping[str, Any]
) -> dict[str, tuple[Any, Any]]:
    """``{field: (now, wanted)}`` for each field of ``wanted`` given (not None) that differs
    from the deployment ``current`` (``version`` and ``canary_version`` are its targets)."""
    now = {
        **current.get("config", {}),
        "version": current.get("target"),
        "canary_version": current.get("canary_target"),
        "canary_weight": current.get("canary_weight"),
    }
    changes = {}
    for key, value in wanted.items():
        if value is None:
            continue
        if key in ("version", "canary_version"):
            value = str(value)
        if now.get(key) != value:
            changes[key] = (now.get(key), value)
    return changes


def _wire(fields: Mapping[str, Any]) -> dict[str, Any]:
    # None keeps the server's default (create) or current value (update); the API takes
    # version references as strings: a number, an alias, or "latest".
    return {
        key: str(value) if key in ("version", "canary_version") else value
        for key, value in fields.items()
        if value is not None
    }
