"""Deployments as desired state: the controller turns deployment rows into running servers.

A model version that no deployment serves gets an implicit deployment on first use: the
``implicit`` settings (no replica until a request comes, scale to zero when idle), made
here and forgotten once it has been idle that long, or when its version is deleted. Every
inference so goes through a version server and replica processes.

``reconcile`` reads the rows, resolves each target (version number, alias, ``latest``) to
a version, and converges: new deployments start, removed ones drain and stop, a target
that now names another version rolls (the new version becomes ready before it takes
traffic; the old one drains), and config changes apply in place or roll when they need
new replicas. The request path only reads the in-memory ``route`` table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from modelbay.errors import NotFound
from modelbay.registry import (
    DeploymentConfig,
    DeploymentRecord,
    DeploymentStore,
    Registry,
    VersionRecord,
)
from modelbay.serving.messages import ReplicaSpec
from modelbay.serving.metrics import ServingMetrics
from modelbay.serving.pool import ReplicaBudget, ReplicaFactory, ReplicaPool
from modelbay.serving.version_server import VersionServer
from modelbay.store.crypto import Keyring

log = logging.getLogger("modelbay.controller")

READY_TIMEOUT_S = 300.0
FOLLOWER_GRACE_S = 1.0


@dataclass
class Deployment:
    """The running side of one deployment row."""

    record: DeploymentRecord
    primary: VersionServer | None = None
    canary: VersionServer | None = None
    error: str | None = None
    rolling: dict[int, VersionServer] = field(default_factory=dict)

    def servers(self) -> list[VersionServer]:
        return [s for s in (self.primary, self.canary) if s is not None]

    def pick(self) -> VersionServer | None:
        """Primary or canary by the canary weight (percent)."""
        if self.canary is not None and random.uniform(0, 100) < self.record.canary_weight:
            return self.canary
        return self.primary or self.canary


def replica_options(record: VersionRecord, config: DeploymentConfig) -> dict[str, Any]:
    """What a replica is started with beyond its version: threads, and for an LLM its
    engine's size (sequences at once, KV cache, context). A change here needs new
    replicas; other config changes apply in place."""
    options: dict[str, Any] = {"threads": config.threads_per_replica}
    if record.format == "llm":
        options.update(
            max_num_seqs=config.max_batch_size,
            kv_cache_mb=config.kv_cache_mb,
            max_model_len=config.max_model_len,
            dtype=config.dtype,
            quantization=config.quantization,
        )
    return options


class DeploymentController:
    """Keeps running version servers in line with the deployment rows."""

    def __init__(
        self,
        registry: Registry,
        deployments: DeploymentStore,
        factory: ReplicaFactory,
        metrics: ServingMetrics,
        *,
        blob_dir: str,
        keyring: Keyring | None = None,
        interval_s: float = 2.0,
        max_replicas: int = 32,
        implicit: DeploymentConfig | None = None,
    ):
        self.registry = registry
        self.store = deployments
        self.factory = factory
        self.metrics = metrics
        self.blob_dir = blob_dir
        self.keyring = keyring
        self.interval_s = interval_s
        self.budget = ReplicaBudget(max_replicas)
        self.running: dict[str, Deployment] = {}
        self.implicit_config = implicit or DeploymentConfig(min_replicas=0, idle_to_zero_s=300)
        self.implicit_servers: dict[tuple[str, int], VersionServer] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Task[None]] = set()

    # request path: memory only

    def route(self, model: str, version: int | None) -> VersionServer | None:
        """The server for a model (by canary weight when ``version`` is None) or version."""
        deployment = self.running.get(model)
        if deployment is None:
            return None
        if version is None:
            return deployment.pick()
        return next((s for s in deployment.servers() if s.version == version), None)

    def primary(self, model: str) -> VersionServer | None:
        """The version a deployment serves unless the canary split picks the canary."""
        deployment = self.running.get(model)
        if deployment is None:
            return None
        return deployment.primary or deployment.canary

    def implicit(self, record: VersionRecord) -> VersionServer:
        """The implicit deployment of a version no deployment serves (made on first use)."""
        key = (record.model, record.version)
        server = self.implicit_servers.get(key)
        if server is None or server.closing:
            server = self._server(f"{record.model} (implicit)", record, self.implicit_config)
            server.start()
            self.implicit_servers[key] = server
        return server

    def forget(self, model: str, version: int | None) -> None:
        """Stop the implicit deployments of a deleted version (all versions: None).
        Safe to call from any thread."""
        self._on_loop(self._forget, model, version)

    def _forget(self, model: str, version: int | None) -> None:
        for key in [k for k in self.implicit_servers if k[0] == model and version in (None, k[1])]:
            self._background_task(self.implicit_servers.pop(key).drain_and_close())

    async def _prune_deleted(self) -> None:
        """Stop implicit deployments of versions deleted (through any frontend)."""
        for model in {m for m, _ in self.implicit_servers}:
            try:
                listed = await asyncio.to_thread(self.registry.list_versions, model)
                versions = {v.version for v in listed}
            except NotFound:
                versions = set()
            for key in [k for k in self.implicit_servers if k[0] == model]:
                if key[1] not in versions:
                    self._forget(*key)

    def _reap_idle(self) -> None:
        """Forget implicit deployments that scaled to zero and stayed idle."""
        now = time.monotonic()
        idle_s = self.implicit_config.idle_to_zero_s
        for key, server in list(self.implicit_servers.items()):
            if server.pool.size == 0 and server.idle_for(now) >= idle_s:
                del self.implicit_servers[key]
                self._background_task(server.drain_and_close())

    # lifecycle

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="deployment controller")

    def notify(self) -> None:
        """Reconcile soon (after a change through this frontend); from any thread."""
        self._on_loop(self._wake.set)

    def _on_loop(self, call: Callable[..., None], *args: Any) -> None:
        """Run ``call`` on the controller's event loop (now, if this is it)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            call(*args)
        else:
            loop.call_soon_threadsafe(call, *args)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*self._background, return_exceptions=True)
        servers = [s for d in self.running.values() for s in d.servers()]
        servers += self.implicit_servers.values()
        self.running.clear()
        self.implicit_servers.clear()
        await asyncio.gather(*(s.drain_and_close() for s in servers), return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                self._reap_idle()
                await self.reconcile()
            except Exception:
                log.exception("reconcile failed; retrying")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)

    async def reconcile(self) -> None:
        """Converge the running deployments to the rows, once."""
        await self._prune_deleted()
        rows = {r.name: r for r in await asyncio.to_thread(self.store.list)}
        for name in [n for n in self.running if n not in rows]:
            gone = self.running.pop(name)
            for server in gone.servers():
                self._background_task(server.drain_and_close())
        for row in rows.values():
            await self._converge(row)

    async def _converge(self, row: DeploymentRecord) -> None:
        deployment = self.running.setdefault(row.name, Deployment(row))
        try:
            primary = await self._resolve(row.model, row.target)
            canary = (
                await self._resolve(row.model, row.canary_target) if row.canary_target else None
            )
        except NotFound as exc:
            deployment.error = exc.message
            return
        deployment.error = None
        deployment.record = row
        deployment.primary = self._place(deployment, deployment.primary, primary, "primary")
        if canary is None or canary.version == primary.version:
            if deployment.canary is not None:
                self._background_task(deployment.canary.drain_and_close())
            deployment.canary = None
        else:
            deployment.canary = self._place(deployment, deployment.canary, canary, "canary")

    def _place(
        self, deployment: Deployment, current: VersionServer | None, want: VersionRecord, role: str
    ) -> VersionServer | None:
        config = deployment.record.config
        same_replicas = (
            current is not None
            and current.version == want.version
            and replica_options(current.record, current.config) == replica_options(want, config)
        )
        if current is not None and same_replicas:
            current.reconfigure(config)
            return current
        if want.version in deployment.rolling:
            return current
        server = self._server(deployment.record.name, want, config)
        if current is None:
            server.start()
            return server
        deployment.rolling[want.version] = server
        self._background_task(self._roll(deployment, current, server, role))
        return current

    async def _roll(
        self, deployment: Deployment, old: VersionServer, new: VersionServer, role: str
    ) -> None:
        """Start ``new``, switch traffic once it is ready, then drain ``old``."""
        try:
            new.start()
            new.pool.scale(max(1, new.config.min_replicas))
            if not await new.pool.wait_ready(READY_TIMEOUT_S):
                error = new.pool.last_error
                deployment.error = f"version {new.version} did not become ready" + (
                    f": {error.message}" if error else ""
                )
                await new.drain_and_close()
                return
            setattr(deployment, role, new)
            log.info("deployment %s: %s now version %d", deployment.record.name, role, new.version)
            # Other frontends learn of the switch within a few tens of milliseconds and still
            # have batches on the old replicas meanwhile: give them time before stopping.
            await asyncio.sleep(FOLLOWER_GRACE_S)
            await old.drain_and_close()
        finally:
            deployment.rolling.pop(new.version, None)

    def _server(self, name: str, record: VersionRecord, config: DeploymentConfig) -> VersionServer:
        spec = ReplicaSpec(
            record,
            self.blob_dir,
            config.threads_per_replica,
            self.keyring,
            options=replica_options(record, config),
        )
        pool = ReplicaPool(name, spec, self.factory, self.metrics, self.budget)
        return VersionServer(record, config, pool, self.metrics)

    async def _resolve(self, model: str, target: str) -> VersionRecord:
        return await asyncio.to_thread(self.registry.get_version, model, target)

    def _background_task(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def status(self, name: str) -> dict[str, object]:
        """What is running for a deployment: versions (serving or rolling in), replicas,
        queue, errors; ``state`` is ready once every serving version can take requests."""
        deployment = self.running.get(name)
        if deployment is None:
            return {"state": "pending", "error": None, "versions": []}
        serving = deployment.servers()
        roles = [(s, "canary" if s is deployment.canary else "primary") for s in serving]
        roles += [(s, "rolling") for s in deployment.rolling.values()]
        versions = [
            {
                "version": s.version,
                "role": role,
                "replicas": len(s.pool.ready),
                "pids": [r.pid for r in s.pool.ready],
                "starting": s.pool.starting,
                "desired": s.pool.desired,
                "short_of_server_limit": s.pool.short_of_budget,
                "queued": len(s.batcher),
                "error": s.pool.last_error.message if s.pool.last_error else None,
            }
            for s, role in roles
        ]
        failing = [
            s.pool.last_error.message
            for s in serving
            if s.pool.last_error is not None and not s.pool.ready
        ]
        error = deployment.error or (failing[0] if failing else None)
        if error is not None:
            state = "error"
        elif serving and all(s.can_serve() for s in serving):
            state = "ready"
        else:
            state = "starting"
        return {"state": state, "error": error, "versions": versions}
