"""The data plane's single entry: every protocol edge (V2 REST, V2 gRPC) calls this."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from modelbay.registry import VersionRecord
from modelbay.serving.served_models import LoadedModel, ServedModels


@dataclass
class InferResult:
    """Outputs in signature order, and which version answered."""

    model: str
    version: int
    outputs: dict[str, np.ndarray]
    labels: list[str] | None


class InferenceService:
    """Resolves a model reference, checks tensors against its signature and runs it."""

    def __init__(self, served: ServedModels, pool: ThreadPoolExecutor):
        self.served = served
        self.pool = pool

    def version(self, name: str, ref: str | int) -> VersionRecord:
        """The version a reference names now (blocking: registry on a cache miss)."""
        return self.served.resolve(name, ref)[0]

    async def loaded(self, name: str, ref: str | int) -> LoadedModel:
        """The model, loading it in a worker thread on first use."""
        model = self.served.cached(name, ref)
        if model is None:
            model = await asyncio.to_thread(self.served.get, name, ref)
        return model

    async def infer(
        self,
        name: str,
        ref: str | int,
        inputs: dict[str, np.ndarray],
        outputs: list[str] | None = None,
    ) -> InferResult:
        """Run one request; ``outputs`` selects outputs by name (None: all)."""
        model = await self.loaded(name, ref)
        model.signature.check_inputs(inputs)
        if outputs:
            model.signature.check_outputs(outputs)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self.pool, model.infer, inputs, outputs)
        wanted = outputs or [s.name for s in model.signature.outputs]
        ordered = {n: result[n] for n in wanted}
        return InferResult(name, model.version, ordered, model.labels)
