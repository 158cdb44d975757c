"""The data plane's single entry: every protocol edge (V2 REST, V2 gRPC) calls this.

Every request runs on a version server (dynamic batching over replica processes): the
model's deployment when it has one (the canary split applies when no version is named),
else the version's implicit deployment, whose replica starts on first use and stops when
idle. Nothing is loaded in this process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from modelbay.errors import ClientDisconnected, InvalidRequest, ModelbayError, ModelNotReady
from modelbay.flights import Flights
from modelbay.registry import LATEST, VersionRecord
from modelbay.runtimes import PLATFORMS
from modelbay.serving.metrics import ServingMetrics
from modelbay.serving.resolver import ModelResolver, Resolved
from modelbay.serving.version_server import VersionServer
from modelbay.tensors import Signature

if TYPE_CHECKING:
    from modelbay.frontends.coordinator import Controller


_MAX_SERIES = 10_000
"""Kept metric children at most (then the cache starts over)."""


@dataclass
class InferResult:
    """Outputs in signature order, and which version answered."""

    model: str
    version: int
    outputs: dict[str, np.ndarray]
    labels: list[str] | None


@dataclass
class ModelMetadata:
    """A model as the protocols describe it: versions, platform, the version's tensors."""

    name: str
    versions: list[str]
    platform: str
    signature: Signature


class InferenceService:
    """Resolves a model reference, checks tensors against its signature and runs it."""

    def __init__(
        self,
        resolver: ModelResolver,
        controller: Controller,
        metrics: ServingMetrics,
    ):
        self.resolver = resolver
        self._flights = Flights()  # registry reads behind the resolver's cache
        self.controller = controller
        self.metrics = metrics
        # Label lookups cost microseconds per request: each series' child is kept.
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._histograms: dict[tuple[str, str], Any] = {}

    def version(self, name: str, ref: str | int | None) -> VersionRecord:
        """The version a reference names now; None is what the model's endpoint serves."""
        if ref is None:
            server = self.controller.primary(name)  # metadata must not flip with the canary
            if server is not None:
                return server.record
        return self.resolver.resolve(name, LATEST if ref is None else ref)[0]

    def metadata(self, name: str, ref: str | int | None) -> ModelMetadata:
        """What V2 model metadata reports (blocking: registry reads)."""
        record = self.version(name, ref)
        return ModelMetadata(
            name=name,
            versions=[str(v.version) for v in self.resolver.registry.list_versions(name)],
            platform=PLATFORMS[record.format],
            signature=record.signature,
        )

    async def target(self, name: str, ref: str | int | None) -> VersionServer:
        """The version server that answers a reference: a deployment's or an implicit one."""
        if ref is None and self.controller.running:
            server = self.controller.route(name, None)
            if server is not None:
                return server
        record = (await self._resolve(name, LATEST if ref is None else ref))[0]
        if self.controller.running:
            server = self.controller.route(name, record.version)
            if server is not None:
                return server
        return self.controller.implicit(record)

    async def ready(self, name: str, ref: str | int | None) -> int:
        """The version that would answer, once it can; ``ModelNotReady`` otherwise.

        Loads nothing: a deployment is ready when a replica is (or it scales from zero);
        a version without one is ready unless its last attempt to start a replica failed.
        """
        server = self.controller.route(name, None) if ref is None else None
        if server is None:
            record = (await self._resolve(name, LATEST if ref is None else ref))[0]
            server = self.controller.route(name, record.version)
            if server is None:
                server = self.controller.implicit_servers.get((name, record.version))
                if server is None:
                    return record.version
        if not server.can_serve() or (server.pool.last_error and not server.pool.has_ready()):
            error = server.pool.last_error
            raise ModelNotReady(
                f"no replica of '{name}' version {server.version} is ready yet"
                + (f": {error.message}" if error else "")
            )
        return server.version

    async def infer(
        self,
        name: str,
        ref: str | int | None,
        inputs: dict[str, np.ndarray],
        outputs: list[str] | None = None,
    ) -> InferResult:
        """Run one request; ``outputs`` selects outputs by name (None: all)."""
        started = time.perf_counter()
        version = "unknown"
        status = 500
        try:
            result = await self._infer(name, ref, inputs, outputs)
            version, status = str(result.version), 200
            return result
        except ModelbayError as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = ClientDisconnected.status  # the client went away (or the server stops)
            raise
        finally:
            self._series(name, version, status).inc()
            if status == 200:
                self._latency(name, version).observe(time.perf_counter() - started)

    def _series(self, name: str, version: str, status: int) -> Any:
        """The request counter of a model, version and status (looked up once)."""
        key = (name, version, status)
        child = self._counters.get(key)
        if child is None:
            if len(self._counters) >= _MAX_SERIES:
                self._counters.clear()
            child = self._counters[key] = self.metrics.requests.labels(name, version, str(status))
        return child

    def _latency(self, name: str, version: str) -> Any:
        key = (name, version)
        child = self._histograms.get(key)
        if child is None:
            if len(self._histograms) >= _MAX_SERIES:
                self._histograms.clear()
            child = self._histograms[key] = self.metrics.request_seconds.labels(name, version)
        return child

    async def llm(self, name: str, ref: str | int | None) -> VersionServer:
        """The version server of an LLM reference (400 if the model is not one)."""
        server = await self.target(name, ref)
        if server.record.format != "llm":
            raise InvalidRequest(
                f"model '{name}' is not a language model (its format is "
                f"{server.record.format}); call it with V2 inference",
                param="model",
            )
        return server

    async def generate(
        self, server: VersionServer, request: dict[str, Any]
    ) -> AsyncGenerator[dict[str, Any], None]:
        """An LLM request's event data, with its metrics: time to first token, time per
        token between events, tokens, and the engine's state as its replica reports it."""
        labels = (server.record.model, str(server.version))
        started = last = time.perf_counter()
        status = 500
        first = True
        try:
            async for event in server.generate(request):
                now = time.perf_counter()
                data = event.data
                produced = sum(len(c["token_ids"]) for c in data["choices"])
                if first:
                    self.metrics.llm_ttft_seconds.labels(*labels).observe(now - started)
                    prompt = data.get("prompt_tokens", 0)
                    self.metrics.llm_tokens.labels(*labels, "prompt").inc(prompt)
                    first = False
                elif produced:
                    gap = (now - last) / produced
                    self.metrics.llm_inter_token_seconds.labels(*labels).observe(gap)
                last = now
                self.metrics.llm_tokens.labels(*labels, "completion").inc(produced)
                self._engine_state(labels, data.get("engine"))
                yield data
            status = 200
        except ModelbayError as exc:
            status = exc.status
            raise
        except (asyncio.CancelledError, GeneratorExit):
            status = ClientDisconnected.status
            raise
        finally:
            self._series(*labels, status).inc()
            if status == 200:
                self._latency(*labels).observe(time.perf_counter() - started)

    def _engine_state(self, labels: tuple[str, str], engine: dict[str, int] | None) -> None:
        if not engine:
            return
        m = self.metrics
        m.llm_sequences.labels(*labels, "running").set(engine["running"])
        m.llm_sequences.labels(*labels, "waiting").set(engine["waiting"])
        m.llm_kv_blocks.labels(*labels, "used").set(engine["blocks_used"])
        m.llm_kv_blocks.labels(*labels, "free").set(engine["blocks_free"])
        m.llm_preemptions.labels(*labels).set(engine["preemptions"])

    async def embed(
        self, name: str, ref: str | int | None, texts: list[str]
    ) -> tuple[int, np.ndarray, int]:
        """Embeddings of ``texts`` by a sentence-embedding model: (version, vectors [n, d],
        tokens read)."""
        server = await self.target(name, ref)
        if server.record.format != "sentence_transformers":
            raise InvalidRequest(
                f"model '{name}' is not an embedding model (its format is {server.record.format})",
                param="model",
            )
        result = await self.infer(
            name, server.version, {"text": np.array([t.encode() for t in texts], dtype=object)}
        )
        return result.version, result.outputs["embedding"], int(result.outputs["tokens"].sum())

    async def _infer(
        self,
        name: str,
        ref: str | int | None,
        inputs: dict[str, np.ndarray],
        outputs: list[str] | None,
    ) -> InferResult:
        server = await self.target(name, ref)
        if server.record.format == "llm":
            raise InvalidRequest(
                f"model '{name}' is a language model: call it with POST /v1/chat/completions "
                "or /v1/completions",
                param="model",
            )
        signature = server.signature
        inputs = signature.check_inputs(inputs, batched=server.batchable)
        if outputs:
            signature.check_outputs(outputs)
        wanted = outputs or [s.name for s in signature.outputs]
        result = await server.submit(inputs, outputs)
        labels = (await self._resolve(name, server.version))[1]
        return InferResult(name, server.version, {n: result[n] for n in wanted}, labels)

    async def _resolve(self, name: str, ref: str | int) -> Resolved:
        hit = self.resolver.peek(name, ref)
        key = ("resolve", name, ref)
        if hit is None:
            return await self._flights.call(key, self.resolver.resolve, name, ref)
        if self.resolver.due(name, ref):
            self._flights.start(key, self.resolver.refresh, name, ref)
        return hit
