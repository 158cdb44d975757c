"""A fake replica for data-plane unit tests: no process, no model, numpy math instead."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from modelbay.serving.messages import ReplicaSpec
from modelbay.serving.replica import ReplicaDied


class FakeReplica:
    """Doubles ``x`` into ``y``; records batch sizes; can be told to die on the next call."""

    started: list[FakeReplica] = []

    def __init__(self, spec: ReplicaSpec, on_exit: Callable[[FakeReplica], None] | None = None):
        self.spec = spec
        self.name = f"fake-{spec.record.version}-{len(FakeReplica.started)}"
        self.inflight = 0
        self.load_s = 0.0
        self.pid: int | None = None
        self.batches: list[int] = []
        self.die_next = False
        self.delay_s = 0.0
        self.killed = False
        self._alive = False
        self._on_exit = on_exit

    @property
    def alive(self) -> bool:
        return self._alive

    async def start(self) -> None:
        await asyncio.sleep(0.01)
        self._alive = True
        FakeReplica.started.append(self)

    async def infer(
        self, inputs: dict[str, np.ndarray], outputs: list[str] | None
    ) -> tuple[dict[str, np.ndarray], float]:
        if not self._alive:
            raise ReplicaDied(self.name)
        self.inflight += 1
        try:
            await asyncio.sleep(self.delay_s)
            if self.die_next:
                self._alive = False
                if self._on_exit is not None:
                    self._on_exit(self)
                raise ReplicaDied(self.name)
            self.batches.append(len(inputs["x"]))
            return {"y": inputs["x"] * 2}, 0.001
        finally:
            self.inflight -= 1

    async def stop(self) -> None:
        self._alive = False

    async def kill(self) -> None:
        self.killed = True
        self._alive = False
        if self._on_exit is not None:
            self._on_exit(self)


def fake_factory(spec: ReplicaSpec, on_exit: Callable[[FakeReplica], None]) -> FakeReplica:
    return FakeReplica(spec, on_exit)
