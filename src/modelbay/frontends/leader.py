"""The leader's side: a control socket that tells followers what runs, and hears their load.

Each follower connects to ``<sockets>/control.sock`` and exchanges JSON lines:

- leader -> follower, whenever it changes (checked every ``PUBLISH_S``): the version
  servers running (deployments' primaries and canaries, implicit deployments) with their
  record, config and ready replicas (name, pid, socket), and each deployment's canary
  weight and status;
- follower -> leader: ``{"demand": [[key, inflight, last_request_at], ...]}`` every
  quarter second and at once when a request waits for a replica, and
  ``{"implicit": [model, version]}`` when it needs a version that runs nowhere yet.

Deployment changes made through a follower reach the leader through the shared epochs
(``Domain.DEPLOYMENTS``), like cache invalidations.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from functools import partial
from typing import Any

import orjson

from modelbay.errors import NotFound
from modelbay.serving.controller import DeploymentController
from modelbay.serving.version_server import VersionServer

log = logging.getLogger("modelbay.frontends")

PUBLISH_S = 0.05
STATE_LIMIT = 256 * 1024**2


def server_key(server: VersionServer, deployment: str | None, role: str) -> str:
    if deployment is None:
        return f"i/{server.record.model}/{server.version}"
    return f"d/{deployment}/{role}"


def describe(server: VersionServer) -> dict[str, Any]:
    failing = server.pool.failing()
    return {
        "record": server.record.model_dump(mode="json"),
        "config": server.config.model_dump(),
        "replicas": [
            [r.name, r.pid, r.listen]  # type: ignore[attr-defined]
            for r in server.pool.ready
            if r.alive and getattr(r, "listen", None)
        ],
        "error": failing.message if failing is not None else None,
    }


def snapshot(controller: DeploymentController) -> dict[str, Any]:
    """What followers need to route: every version server and deployment."""
    servers: dict[str, Any] = {}
    deployments: dict[str, Any] = {}
    for name, deployment in controller.running.items():
        roles = {}
        for role, server in (("primary", deployment.primary), ("canary", deployment.canary)):
            if server is not None:
                key = server_key(server, name, role)
                servers[key] = describe(server)
                roles[role] = key
        deployments[name] = {
            "weight": deployment.record.canary_weight,
            **roles,
            "status": controller.status(name),
        }
    for server in controller.implicit_servers.values():
        servers[server_key(server, None, "implicit")] = describe(server)
    return {"servers": servers, "deployments": deployments}


class ControlServer:
    """Serves followers on a Unix socket for as long as this frontend leads."""

    def __init__(self, controller: DeploymentController, path: str):
        self.controller = controller
        self.path = path
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._state = b""
        self._changed = asyncio.Condition()
        self._publisher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(
            self._serve, path=self.path, limit=STATE_LIMIT
        )
        self._publisher = asyncio.create_task(self._publish(), name="control publisher")

    async def stop(self) -> None:
        if self._publisher is not None:
            self._publisher.cancel()
            await asyncio.gather(self._publisher, return_exceptions=True)
        if self._server is not None:
            self._server.close()
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)

    async def _publish(self) -> None:
        while True:
            if not self._clients:  # no follower: nothing to describe
                self._state = b""
                await asyncio.sleep(PUBLISH_S)
                continue
            try:
                state = orjson.dumps(snapshot(self.controller)) + b"\n"
            except Exception:
                log.exception("cannot describe the running deployments")
                state = self._state
            if state != self._state:
                self._state = state
                async with self._changed:
                    self._changed.notify_all()
            await asyncio.sleep(PUBLISH_S)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        frontend = f"follower-{next(self._ids)}"
        sender = asyncio.create_task(self._send_states(writer))
        try:
            while line := await reader.readline():
                await self._handle(frontend, orjson.loads(line))
        except (ConnectionError, orjson.JSONDecodeError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Stopping: end normally. Python 3.11's asyncio logs a cancelled connection
            # task as an unhandled exception, with a traceback.
            pass
        except Exception:
            log.exception("dropping a follower whose messages cannot be read")
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            writer.close()
            self._clients.discard(task)

    async def _send_states(self, writer: asyncio.StreamWriter) -> None:
        sent = b""
        with contextlib.suppress(ConnectionError):
            while True:
                if self._state != sent:
                    sent = self._state
                    writer.write(sent)
                    await writer.drain()
                async with self._changed:
                    await self._changed.wait_for(partial(self._differs, sent))

    def _differs(self, sent: bytes) -> bool:
        return self._state != sent

    async def _handle(self, frontend: str, message: dict[str, Any]) -> None:
        for key, inflight, last in message.get("demand", ()):
            server = self._server_of(key)
            if server is not None:
                server.report_remote(frontend, int(inflight), last)
        wanted = message.get("implicit")
        if wanted:
            model, version = wanted
            try:
                record = await asyncio.to_thread(
                    self.controller.registry.get_version, model, int(version)
                )
            except NotFound:
                return
            if self.controller.route(model, record.version) is None:
                self.controller.implicit(record)

    def _server_of(self, key: str) -> VersionServer | None:
        kind, _, rest = key.partition("/")
        if kind == "i":
            model, _, version = rest.rpartition("/")
            return self.controller.implicit_servers.get((model, int(version)))
        name, _, role = rest.rpartition("/")
        deployment = self.controller.running.get(name)
        if deployment is None:
            return None
        return deployment.canary if role == "canary" else deployment.primary
