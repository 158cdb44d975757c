"""The replicas of one version: started, supervised (a dead one is replaced), scaled, picked."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any

import numpy as np

from modelbay.errors import DeadlineExceeded, ModelbayError, ModelNotReady
from modelbay.serving.messages import GenerateEvent, ReplicaSpec
from modelbay.serving.metrics import ServingMetrics
from modelbay.serving.replica import Replica, ReplicaDied

log = logging.getLogger("modelbay.pool")

ReplicaFactory = Callable[[ReplicaSpec, Callable[[Replica], None]], Replica]
"""Makes a replica for a spec; the callback is for an unexpected exit."""

# After a failed start, wait before trying again (doubling up to the max): a model that
# cannot load must not turn into a process-spawning loop.
_BACKOFF_S = 1.0
_MAX_BACKOFF_S = 30.0


class ReplicaBudget:
    """How many replica processes all deployments may run at once on this server, so a
    deployment asking for many replicas cannot exhaust the machine."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0

    def take(self) -> bool:
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def give_back(self) -> None:
        self.used = max(0, self.used - 1)


class ReplicaPool:
    """Keeps ``desired`` replicas of one version running and spreads batches over them."""

    def __init__(
        self,
        deployment: str,
        spec: ReplicaSpec,
        factory: ReplicaFactory,
        metrics: ServingMetrics,
        budget: ReplicaBudget,
        *,
        max_inflight_per_replica: int = 2,
    ):
        self.deployment = deployment
        self.spec = spec
        self.factory = factory
        self.metrics = metrics
        self.budget = budget
        self.short_of_budget = 0
        self.per_replica = max_inflight_per_replica
        self.desired = 0
        self.ready: list[Replica] = []
        self.starting = 0
        self.last_error: ModelbayError | None = None
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._backoff_s = 0.0
        self._next_start_at = 0.0
        self._labels = (spec.record.model, str(spec.record.version))
        self.on_change: Callable[[], None] | None = None
        """Called when a replica becomes ready or fails to start (the server's loop)."""

    @property
    def size(self) -> int:
        return len(self.ready) + self.starting

    def has_ready(self) -> bool:
        """Whether a replica is ready to take batches."""
        return bool(self.ready)

    def failing(self) -> ModelbayError | None:
        """Why no replica runs: the last start failed and none is ready or starting."""
        if self.ready or self.starting:
            return None
        return self.last_error

    def capacity(self) -> int:
        """Batches the ready replicas take at once without queueing behind each other."""
        return self.per_replica * sum(1 for r in self.ready if r.alive)

    def scale(self, n: int) -> None:
        """Aim for ``n`` replicas: start or stop some in the background."""
        self.desired = n
        while self.size < n and not self._closed and time.monotonic() >= self._next_start_at:
            if not self.budget.take():
                if not self.short_of_budget:
                    log.warning(
                        "server replica limit (%d) reached: %s:%s runs %d of %d",
                        self.budget.limit,
                        *self._labels,
                        self.size,
                        n,
                    )
                break
            self.starting += 1  # counted now, so the loop sees it before the task runs
            self._spawn(self._start_one())
        self.short_of_budget = max(0, n - self.size)
        surplus = len(self.ready) - n
        for replica in sorted(self.ready, key=lambda r: r.inflight)[: max(0, surplus)]:
            self.ready.remove(replica)
            self._spawn(self._stop(replica))
        self._report()

    async def wait_ready(self, timeout: float) -> bool:
        """Whether at least one replica is ready within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.ready:
            if self.last_error is not None and self.starting == 0:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                return False
        return True

    async def run(
        self, inputs: dict[str, np.ndarray], outputs: list[str] | None, timeout: float
    ) -> tuple[dict[str, np.ndarray], float]:
        """Run a batch on the least-loaded replica; retried once if that replica dies.

        A replica gets ``timeout`` seconds for the batch; one that misses it is wedged (or
        far too slow): it is killed and replaced, and the batch answered 503, not retried
        (the same input may wedge the next replica too).
        """
        for attempt in range(2):
            replica = self._pick()
            if replica is None:
                if not await self.wait_ready(timeout):
                    break
                replica = self._pick() or min(self.ready, key=lambda r: r.inflight)
            try:
                async with asyncio.timeout(timeout):
                    return await replica.infer(inputs, outputs)
            except TimeoutError:
                await self._kill_wedged(replica, timeout)
                raise ModelNotReady(
                    f"replica {replica.name} did not finish the batch within the request "
                    f"timeout ({timeout:g} s); it was stopped and is being replaced",
                    retry_after=1.0,
                ) from None
            except ReplicaDied:
                log.warning(
                    "replica %s died with a batch in flight (attempt %d)", replica.name, attempt + 1
                )
        reason = f": {self.last_error.message}" if self.last_error else ""
        raise ModelNotReady(
            f"no replica of '{self.spec.record.model}' version {self.spec.record.version} "
            f"could run the request{reason}",
            retry_after=1.0,
        )

    async def generate(
        self, request: dict[str, Any], timeout: float
    ) -> AsyncGenerator[GenerateEvent, None]:
        """Stream an LLM request from the least-busy replica (each runs many at once).

        Retried once elsewhere if its replica dies before the first event. A request that
        gets no event for ``timeout`` seconds while its replica steps other requests waited
        too long for a place (504); a replica that sends nothing at all for that long is
        wedged: it is killed and replaced, and its requests answered 503.
        """
        for attempt in range(2):
            replica = min(self.ready, key=lambda r: r.inflight) if self.ready else None
            if replica is None:
                if not await self.wait_ready(timeout):
                    break
                replica = min(self.ready, key=lambda r: r.inflight)
            events = replica.generate(request)
            started = False
            try:
                while True:
                    event = await self._next_event(replica, events, timeout, started)
                    if event is None:
                        return
                    started = True
                    yield event
                    if event.final:
                        return
            except ReplicaDied:
                if started:
                    raise ModelNotReady(
                        f"replica {replica.name} exited while generating", retry_after=1.0
                    ) from None
                log.warning("replica %s died before answering (attempt %d)", replica.name, attempt)
            finally:
                await events.aclose()
        reason = f": {self.last_error.message}" if self.last_error else ""
        raise ModelNotReady(
            f"no replica of '{self.spec.record.model}' version {self.spec.record.version} "
            f"could run the request{reason}",
            retry_after=1.0,
        )

    async def _next_event(
        self,
        replica: Replica,
        events: AsyncGenerator[GenerateEvent, None],
        timeout: float,
        started: bool,
    ) -> GenerateEvent | None:
        while True:
            try:
                async with asyncio.timeout(timeout):
                    return await anext(events)
            except StopAsyncIteration:
                return None
            except TimeoutError:
                if time.monotonic() - replica.last_event_at > timeout:
                    await self._kill_wedged(replica, timeout)
                    raise ModelNotReady(
                        f"replica {replica.name} sent nothing within the request timeout "
                        f"({timeout:g} s); it was stopped and is being replaced",
                        retry_after=1.0,
                    ) from None
                if not started:
                    raise DeadlineExceeded(
                        f"the request waited past its {timeout:g} s timeout for a place in "
                        "the running batch",
                        retry_after=1.0,
                    ) from None

    async def close(self) -> None:
        """Stop every replica after its in-flight work (drain)."""
        self._closed = True
        self.desired = 0
        replicas, self.ready = self.ready, []
        await asyncio.gather(*(self._stop(r) for r in replicas), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._report()

    async def _kill_wedged(self, replica: Replica, timeout: float) -> None:
        log.error(
            "replica %s (pid %s) ran a batch past %g s; killing it",
            replica.name,
            replica.pid,
            timeout,
        )
        self.metrics.replica_timeouts.labels(*self._labels).inc()
        await replica.kill()  # reported through _on_exit, which replaces it

    def _pick(self) -> Replica | None:
        candidates = [r for r in self.ready if r.alive and r.inflight < self.per_replica]
        return min(candidates, key=lambda r: r.inflight) if candidates else None

    async def _start_one(self) -> None:
        """Start one replica; ``starting`` was incremented by the caller."""
        replica = self.factory(self.spec, self._on_exit)
        started = time.perf_counter()
        try:
            await replica.start()
        except ModelbayError as exc:
            self.budget.give_back()
            self.last_error = exc
            self._backoff_s = min(_MAX_BACKOFF_S, max(_BACKOFF_S, 2 * self._backoff_s))
            self._next_start_at = time.monotonic() + self._backoff_s
            log.error("replica of %s:%s failed to start: %s", *self._labels, exc.message)
            return
        except BaseException:  # cancelled while starting (pool closing): free the slot
            self.budget.give_back()
            raise
        finally:
            self.starting -= 1
            self._changed.set()
            if self.on_change is not None:
                self.on_change()
        self.last_error = None
        self._backoff_s = 0.0
        self.metrics.cold_starts.labels(*self._labels).inc()
        self.metrics.cold_start_seconds.labels(*self._labels).observe(time.perf_counter() - started)
        if self._closed or len(self.ready) >= self.desired:
            await self._stop(replica)
            return
        self.ready.append(replica)
        self._report()
        self._changed.set()

    async def _stop(self, replica: Replica) -> None:
        try:
            await replica.stop()
        finally:
            self.budget.give_back()

    def _on_exit(self, replica: Replica) -> None:
        if replica in self.ready:
            self.ready.remove(replica)
        self.budget.give_back()
        self.metrics.replica_restarts.labels(*self._labels).inc()
        self._report()
        if not self._closed and self.size < self.desired:
            self.scale(self.desired)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _report(self) -> None:
        version = str(self.spec.record.version)
        self.metrics.replicas.labels(self.deployment, version, "ready").set(len(self.ready))
        self.metrics.replicas.labels(self.deployment, version, "starting").set(self.starting)


ReplicaAddress = tuple[str, int, str]
"""(name, pid, socket path) of a replica another frontend runs."""


class AttachedPool(ReplicaPool):
    """The replicas of one version as another frontend (the leader) runs them.

    This frontend starts and stops none: ``sync`` follows the leader's list, connecting
    to new replicas and dropping gone ones; ``scale`` only tells the leader (through
    ``on_demand``) that requests wait. Batches are run, retried and timed out as in
    ``ReplicaPool``; a replica past its deadline is killed here, replaced by the leader.
    """

    def __init__(
        self,
        deployment: str,
        spec: ReplicaSpec,
        metrics: ServingMetrics,
        on_demand: Callable[[], None],
    ):
        super().__init__(deployment, spec, _no_factory, metrics, ReplicaBudget(0))
        self.on_demand = on_demand
        self._known: dict[str, Replica] = {}

    def sync(self, replicas: list[ReplicaAddress], error: str | None) -> None:
        """Follow the leader's list of ready replicas (and why none starts, if so)."""
        from modelbay.serving.replica import RemoteReplica

        wanted = {name: (pid, path) for name, pid, path in replicas}
        for name in [n for n in self._known if n not in wanted]:
            replica = self._known.pop(name)
            if replica in self.ready:
                self.ready.remove(replica)
            self._spawn(replica.stop())
        for name, (pid, path) in wanted.items():
            if name not in self._known:
                replica = RemoteReplica(self.spec, name, pid, path, self._on_exit)
                self._known[name] = replica
                self.starting += 1
                self._spawn(self._connect(replica))
        self.last_error = ModelbayError(error, status=503) if error else None
        self._changed.set()
        if self.on_change is not None:
            self.on_change()

    def has_ready(self) -> bool:
        # The leader's word: this frontend may still be connecting to them.
        return bool(self._known)

    def scale(self, n: int) -> None:
        self.desired = n
        if n > len(self.ready):
            self.on_demand()

    async def close(self) -> None:
        self._closed = True
        replicas, self.ready = list(self._known.values()), []
        self._known.clear()
        await asyncio.gather(*(r.stop() for r in replicas), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connect(self, replica: Replica) -> None:
        try:
            await replica.start()
        except Exception as exc:
            log.warning("cannot reach replica %s: %s", replica.name, exc)
            self._known.pop(replica.name, None)
            return
        finally:
            self.starting -= 1
            self._changed.set()
        if self._closed or self._known.get(replica.name) is not replica:
            await replica.stop()
            return
        self.ready.append(replica)
        if self.on_change is not None:
            self.on_change()

    def _on_exit(self, replica: Replica) -> None:
        if replica in self.ready:
            self.ready.remove(replica)
        self._known.pop(replica.name, None)

    def _report(self) -> None:
        pass  # the leader reports the replicas it runs


def _no_factory(spec: ReplicaSpec, on_exit: Callable[[Replica], None]) -> Replica:
    raise AssertionError("an attached pool starts no replica")
