"""The data plane's single entry: every protocol edge (V2 REST, V2 gRPC) calls this.

A deployed model is answered by its deployment (batching over replica processes; the
canary split applies when no version is named); any other version is loaded on first
use and run on a thread of this process.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from modelbay.errors import ClientDisconnected, ModelbayError, ModelNotReady
from modelbay.registry import LATEST, VersionRecord
from modelbay.runtimes import PLATFORMS
from modelbay.serving.controller import DeploymentController
from modelbay.serving.metrics import ServingMetrics
from modelbay.serving.served_models import LoadedModel, ServedModels
from modelbay.serving.version_server import VersionServer
from modelbay.tensors import Signature


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
        served: ServedModels,
        pool: ThreadPoolExecutor,
        controller: DeploymentController,
        metrics: ServingMetrics,
    ):
        self.served = served
        self.pool = pool
        self.controller = controller
        self.metrics = metrics

    def version(self, name: str, ref: str | int | None) -> VersionRecord:
        """The version a reference names now; None is what the model's endpoint serves."""
        if ref is None:
            server = self.controller.primary(name)  # metadata must not flip with the canary
            if server is not None:
                return server.record
        return self.served.resolve(name, LATEST if ref is None else ref)[0]

    def metadata(self, name: str, ref: str | int | None) -> ModelMetadata:
        """What V2 model metadata reports (blocking: registry reads)."""
        record = self.version(name, ref)
        return ModelMetadata(
            name=name,
            versions=[str(v.version) for v in self.served.registry.list_versions(name)],
            platform=PLATFORMS[record.format],
            signature=record.signature,
        )

    async def loaded(self, name: str, ref: str | int | None) -> LoadedModel | VersionServer:
        """What would answer: a deployment's version server, or the in-process model."""
        server = await self._route(name, ref)
        if server is not None:
            return server
        ref = LATEST if ref is None else ref
        model = self.served.cached(name, ref)
        if model is None:
            model = await asyncio.to_thread(self.served.get, name, ref)
        return model

    async def ready(self, name: str, ref: str | int | None) -> int:
        """The version that would answer, once it can; ``ModelNotReady`` otherwise."""
        target = await self.loaded(name, ref)
        if isinstance(target, VersionServer) and not target.can_serve():
            error = target.pool.last_error
            raise ModelNotReady(
                f"no replica of '{name}' version {target.version} is ready yet"
                + (f": {error.message}" if error else "")
            )
        return target.version

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
            self.metrics.requests.labels(name, version, str(status)).inc()
            if status == 200:
                self.metrics.request_seconds.labels(name, version).observe(
                    time.perf_counter() - started
                )

    async def _infer(
        self,
        name: str,
        ref: str | int | None,
        inputs: dict[str, np.ndarray],
        outputs: list[str] | None,
    ) -> InferResult:
        target = await self.loaded(name, ref)
        signature = target.signature
        inputs = signature.check_inputs(inputs, batched=isinstance(target, VersionServer))
        if outputs:
            signature.check_outputs(outputs)
        wanted = outputs or [s.name for s in signature.outputs]
        if isinstance(target, VersionServer):
            result = await target.submit(inputs, outputs)
            labels = await self._labels(name, target.version)
        else:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self.pool, target.infer, inputs, outputs)
            labels = target.labels
        return InferResult(name, target.version, {n: result[n] for n in wanted}, labels)

    async def _route(self, name: str, ref: str | int | None) -> VersionServer | None:
        if not self.controller.running:
            return None
        if ref is None:
            return self.controller.route(name, None)
        hit = self.served.peek(name, ref)
        if hit is None:
            hit = await asyncio.to_thread(self.served.resolve, name, ref)
        return self.controller.route(name, hit[0].version)

    async def _labels(self, name: str, version: int) -> list[str] | None:
        hit = self.served.peek(name, version)
        if hit is None:
            hit = await asyncio.to_thread(self.served.resolve, name, version)
        return hit[1]
