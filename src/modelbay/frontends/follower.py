"""A follower's side: version servers over the leader's replicas, routed as the leader says.

``FollowerController`` stands where the leader has its ``DeploymentController`` (the same
routing methods): it keeps one ``VersionServer`` per version server the leader runs,
each batching this frontend's requests over an ``AttachedPool`` of the leader's
replicas, and reports its load back so the leader's autoscalers see the whole server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import orjson

from modelbay.frontends.epochs import Domain, SharedEpochs
from modelbay.frontends.run import RunDir
from modelbay.registry import DeploymentConfig, VersionRecord
from modelbay.serving.messages import ReplicaSpec
from modelbay.serving.metrics import ServingMetrics
from modelbay.serving.pool import AttachedPool
from modelbay.serving.version_server import VersionServer

log = logging.getLogger("modelbay.frontends")

REPORT_S = 0.25
STATE_LIMIT = 256 * 1024**2
"""Longest line of state or load report (every version server with its record)."""
RECONNECT_S = 0.2
_LOCAL_GRACE_S = 10.0
"""An implicit deployment asked of the leader is kept this long before its state lists it."""
_LEADER_GONE = "the leader frontend is restarting; retry shortly"


class FollowerController:
    """Routes requests of this frontend onto the leader's replicas."""

    def __init__(
        self,
        run: RunDir,
        epochs: SharedEpochs,
        metrics: ServingMetrics,
        *,
        blob_dir: str,
        on_leader_gone: Callable[[], None] | None = None,
    ):
        self.run = run
        self.epochs = epochs
        self.metrics = metrics
        self.blob_dir = blob_dir
        self.on_leader_gone = on_leader_gone
        self.servers: dict[str, VersionServer] = {}
        self.implicit_servers: dict[tuple[str, int], VersionServer] = {}
        self.deployments: dict[str, dict[str, Any]] = {}
        self._asked: dict[str, float] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._reporter: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._last_report = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    # the routing interface of DeploymentController

    @property
    def running(self) -> dict[str, dict[str, Any]]:
        return self.deployments

    def route(self, model: str, version: int | None) -> VersionServer | None:
        deployment = self.deployments.get(model)
        if deployment is None:
            return None
        primary = self.servers.get(deployment.get("primary", ""))
        canary = self.servers.get(deployment.get("canary", ""))
        if version is None:
            if canary is not None and random.uniform(0, 100) < deployment["weight"]:
                return canary
            return primary or canary
        return next((s for s in (primary, canary) if s is not None and s.version == version), None)

    def primary(self, model: str) -> VersionServer | None:
        deployment = self.deployments.get(model)
        if deployment is None:
            return None
        return self.servers.get(deployment.get("primary", "")) or self.servers.get(
            deployment.get("canary", "")
        )

    def implicit(self, record: VersionRecord) -> VersionServer:
        key = f"i/{record.model}/{record.version}"
        server = self.servers.get(key)
        if server is None or server.closing:
            server = self._server(key, record, DeploymentConfig(min_replicas=0))
            self._asked[key] = time.monotonic()
            self._send({"implicit": [record.model, record.version]})
        return server

    def forget(self, model: str, version: int | None) -> None:
        """Drop local implicit deployments of a deleted version; from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._forget, model, version)

    def _forget(self, model: str, version: int | None) -> None:
        for key, server in list(self.servers.items()):
            wanted = server.record.model == model and version in (None, server.version)
            if wanted and key.startswith("i/"):
                self._drop(key)

    def notify(self) -> None:
        self.epochs.bump(Domain.DEPLOYMENTS)

    def status(self, name: str) -> dict[str, object]:
        deployment = self.deployments.get(name)
        if deployment is None:
            return {"state": "pending", "error": None, "versions": []}
        status: dict[str, object] = deployment["status"]
        return status

    # lifecycle

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._follow(), name="follower")
        self._reporter = asyncio.create_task(self._report_loop(), name="load reports")

    async def stop(self) -> None:
        for task in (self._task, self._reporter):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        servers, self.servers = list(self.servers.values()), {}
        self.implicit_servers.clear()
        await asyncio.gather(*(s.drain_and_close() for s in servers), return_exceptions=True)
        await asyncio.gather(*self._background, return_exceptions=True)

    async def _follow(self) -> None:
        while True:
            leader = self.run.leader()
            try:
                if leader is None:
                    raise ConnectionError("no leader yet")
                reader, self._writer = await asyncio.open_unix_connection(
                    leader["control"], limit=STATE_LIMIT
                )
            except (OSError, ConnectionError):
                if self.on_leader_gone is not None:
                    self.on_leader_gone()
                await asyncio.sleep(RECONNECT_S)
                continue
            try:
                while line := await reader.readline():
                    self._apply(orjson.loads(line))
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            except Exception:  # a state this frontend cannot read: say so, start over
                log.exception("cannot follow the leader's state")
            finally:
                self._writer.close()
                self._writer = None
            log.warning("lost the leader frontend; reconnecting")
            for server in self.servers.values():
                assert isinstance(server.pool, AttachedPool)
                server.pool.sync([], _LEADER_GONE)
            if self.on_leader_gone is not None:
                self.on_leader_gone()
            await asyncio.sleep(RECONNECT_S)

    def _apply(self, state: dict[str, Any]) -> None:
        now = time.monotonic()
        for key, described in state["servers"].items():
            record = described["record"]
            server = self.servers.get(key)
            if server is None or server.version != record["version"]:
                if server is not None:
                    self._drop(key)
                server = self._server(
                    key,
                    VersionRecord.model_validate(record),
                    DeploymentConfig.model_validate(described["config"]),
                )
            else:
                config = DeploymentConfig.model_validate(described["config"])
                if config != server.config:
                    server.reconfigure(config)
            self._asked.pop(key, None)
            assert isinstance(server.pool, AttachedPool)
            server.pool.sync([tuple(r) for r in described["replicas"]], described["error"])
        for key in [k for k in self.servers if k not in state["servers"]]:
            asked = self._asked.get(key)
            if asked is None or now - asked > _LOCAL_GRACE_S:
                self._drop(key)
        self.deployments = state["deployments"]

    def _server(self, key: str, record: VersionRecord, config: DeploymentConfig) -> VersionServer:
        spec = ReplicaSpec(record, self.blob_dir, config.threads_per_replica)
        pool = AttachedPool(key, spec, self.metrics, on_demand=self._demand)
        server = VersionServer(record, config, pool, self.metrics)
        server.start()
        self.servers[key] = server
        if key.startswith("i/"):
            self.implicit_servers[(record.model, record.version)] = server
        return server

    def _drop(self, key: str) -> None:
        server = self.servers.pop(key, None)
        self._asked.pop(key, None)
        if server is None:
            return
        if self.implicit_servers.get((server.record.model, server.version)) is server:
            del self.implicit_servers[(server.record.model, server.version)]
        task = asyncio.create_task(server.drain_and_close())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _demand(self) -> None:
        """A request waits for a replica: report now, not at the next tick."""
        if time.monotonic() - self._last_report > 0.02:
            self._report()

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(REPORT_S)
            self._report()

    def _report(self) -> None:
        self._last_report = time.monotonic()
        for key in self._asked:  # asked before the leader listened, or not answered yet
            server = self.servers.get(key)
            if server is not None:
                self._send({"implicit": [server.record.model, server.version]})
        demand = [[key, *server.local_load()] for key, server in self.servers.items()]
        if demand:
            self._send({"demand": demand})

    def _send(self, message: dict[str, Any]) -> None:
        if self._writer is None:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            self._writer.write(orjson.dumps(message) + b"\n")
