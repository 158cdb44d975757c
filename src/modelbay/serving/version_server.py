"""One version of a deployment in service: a batching queue, a replica pool, an autoscaler.

The loop here is thin: it asks the ``Batcher`` what to run, hands batches to the pool,
answers expired requests with 504, and lets the ``Autoscaler`` size the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

import numpy as np

from modelbay.errors import DeadlineExceeded, ModelbayError, ModelNotReady, Overloaded
from modelbay.registry import DeploymentConfig, VersionRecord
from modelbay.serving.autoscaler import Autoscaler, LoadSample, ScalingPolicy
from modelbay.serving.batcher import Batch, Batcher, Pending, QueueFull
from modelbay.serving.messages import GenerateEvent
from modelbay.serving.metrics import ServingMetrics
from modelbay.serving.pool import ReplicaPool
from modelbay.tensors import Signature

log = logging.getLogger("modelbay.serving")

AUTOSCALE_TICK_S = 0.25
DRAIN_TIMEOUT_S = 60.0
_REMOTE_FRESH_S = 2.0
"""Another frontend's load report counts this long (they come every 0.25 s)."""
Result = asyncio.Future[dict[str, np.ndarray]]


def policy_of(config: DeploymentConfig) -> ScalingPolicy:
    return ScalingPolicy(
        min_replicas=config.min_replicas,
        max_replicas=config.max_replicas,
        target_inflight_per_replica=config.target_inflight_per_replica,
        scale_up_delay_s=config.scale_up_delay_s,
        scale_down_delay_s=config.scale_down_delay_s,
        idle_to_zero_s=config.idle_to_zero_s,
    )


class VersionServer:
    """Answers requests for one version with dynamic batching over a pool of replicas."""

    def __init__(
        self,
        record: VersionRecord,
        config: DeploymentConfig,
        pool: ReplicaPool,
        metrics: ServingMetrics,
    ):
        self.record = record
        self.config = config
        self.pool = pool
        self.metrics = metrics
        # Requests stack along the first axis; a model without one runs them one by one.
        self.batchable = record.signature.batchable
        self.batcher = Batcher(
            self._batch_size(config), config.max_queue_delay_ms / 1000, config.queue_capacity
        )
        self.autoscaler = Autoscaler(policy_of(config))
        self.last_request_at: float | None = None
        self.running_requests = 0
        self.running_batches = 0
        self.closing = False
        self._wake = asyncio.Event()
        self._sleep_until = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._labels = (record.model, str(record.version))
        self._born = time.monotonic()
        self._queue_depth = metrics.queue_depth.labels(*self._labels)
        self.remote: dict[str, tuple[int, float | None, float]] = {}
        """Other frontends' load: frontend -> (inflight, last request, reported at)."""
        pool.on_change = self._wake.set

    @property
    def version(self) -> int:
        return self.record.version

    @property
    def signature(self) -> Signature:
        return self.record.signature

    def can_serve(self) -> bool:
        """A replica is ready, or the deployment scales from zero on demand."""
        return self.pool.has_ready() or (self.config.min_replicas == 0 and not self.closing)

    def start(self) -> None:
        self.pool.scale(self.config.min_replicas)
        self._loop_task = asyncio.create_task(self._loop(), name=f"batcher {self._labels}")

    def reconfigure(self, config: DeploymentConfig) -> None:
        """Apply batching and scaling changes that need no new replicas."""
        self.config = config
        self.batcher.max_batch_size = self._batch_size(config)
        self.batcher.max_delay_s = config.max_queue_delay_ms / 1000
        self.batcher.capacity = config.queue_capacity
        self.autoscaler = Autoscaler(policy_of(config))
        self._wake.set()

    async def submit(
        self, inputs: dict[str, np.ndarray], outputs: list[str] | None
    ) -> dict[str, np.ndarray]:
        """Queue a request and wait for its rows of a batch's outputs."""
        if self.closing:
            raise ModelNotReady(f"version {self.version} is being replaced", retry_after=1.0)
        now = time.monotonic()
        future: Result = asyncio.get_running_loop().create_future()
        pending = Pending(
            inputs,
            enqueued_at=now,
            deadline=now + self.config.request_timeout_ms / 1000,
            token=future,
            outputs=tuple(outputs) if outputs else None,
            alone=not self.batchable,
        )
        try:
            self.batcher.add(pending)
        except QueueFull as exc:
            raise Overloaded(
                f"model '{self.record.model}' is overloaded: {exc}", retry_after=exc.retry_after_s
            ) from None
        self.last_request_at = now
        self._queue_depth.set(len(self.batcher))
        if self.pool.size == 0:
            self._autoscale(now)  # cold start from zero: do not wait for the next tick
        # Wake the loop only if this request is due before the loop's planned wake-up
        # (a full batch, or the first request of an idle queue), not for every arrival.
        due = self.batcher.wait_time(now)
        if due is not None and now + due < self._sleep_until:
            self._wake.set()
        try:
            return await future
        except asyncio.CancelledError:
            self.batcher.cancel(future)  # the client went away: never run it
            self._queue_depth.set(len(self.batcher))
            raise

    async def generate(self, request: dict[str, Any]) -> AsyncGenerator[GenerateEvent, None]:
        """Stream an LLM request's events. The engine in each replica batches continuously,
        so requests skip the batcher; at most ``queue_capacity`` run here at once (429
        beyond), and the autoscaler sees them as in flight."""
        if self.closing:
            raise ModelNotReady(f"version {self.version} is being replaced", retry_after=1.0)
        if self.running_requests >= self.config.queue_capacity:
            raise Overloaded(
                f"model '{self.record.model}' is overloaded: {self.running_requests} requests "
                f"are generating (queue_capacity {self.config.queue_capacity})",
                retry_after=1.0,
            )
        now = time.monotonic()
        self.running_requests += 1
        self.last_request_at = now
        if self.pool.size == 0:
            self._autoscale(now)  # cold start from zero: do not wait for the next tick
        try:
            timeout = self.config.request_timeout_ms / 1000
            async for event in self.pool.generate(request, timeout):
                yield event
        finally:
            self.running_requests -= 1
            self._wake.set()

    def _batch_size(self, config: DeploymentConfig) -> int:
        return config.max_batch_size if self.batchable else 1

    def idle_for(self, now: float) -> float:
        """Seconds since this server last had work, other frontends' included (0 while
        it has some)."""
        inflight, last = self._load(now)
        if inflight:
            return 0.0
        return now - (last if last is not None else self._born)

    def report_remote(self, frontend: str, inflight: int, last_request_at: float | None) -> None:
        """Another frontend's load on this version (it batches and sends to our replicas)."""
        now = time.monotonic()
        self.remote[frontend] = (inflight, last_request_at, now)
        if inflight and self.pool.size == 0:
            self._autoscale(now)  # its cold start: do not wait for the next tick

    def local_load(self) -> tuple[int, float | None]:
        """Requests queued and running here, and when the last one arrived."""
        return len(self.batcher) + self.running_requests, self.last_request_at

    def _load(self, now: float) -> tuple[int, float | None]:
        inflight, last = self.local_load()
        for frontend, (n, at, reported) in list(self.remote.items()):
            if now - reported > _REMOTE_FRESH_S:
                del self.remote[frontend]
                continue
            inflight += n
            if at is not None and (last is None or at > last):
                last = at
        return inflight, last

    async def drain_and_close(self) -> None:
        """Stop taking requests, finish queued and running ones, then stop the replicas."""
        self.closing = True
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while (len(self.batcher) or self.running_requests) and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.01)
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        await self.pool.close()

    async def _loop(self) -> None:
        next_tick = 0.0
        while True:
            now = time.monotonic()
            for pending in self.batcher.expired(now):
                self._fail(
                    pending,
                    DeadlineExceeded(
                        f"request waited past its {self.config.request_timeout_ms:g} ms timeout"
                    ),
                )
            if now >= next_tick:
                self._autoscale(now)
                next_tick = now + AUTOSCALE_TICK_S
            failing = self.pool.failing() if len(self.batcher) else None
            if failing is not None:
                # No replica could start (a model that fails to load, a missing key): say
                # so now rather than at each request's timeout; the pool retries later.
                for pending in self.batcher.take_all():
                    self._fail(pending, failing)
            free = self.pool.capacity() > self.running_batches
            batch = self.batcher.next_batch(now) if free else None
            if batch is not None:
                self._start(batch, now)
                continue
            wait = self.batcher.wait_time(now) if free else None
            timeout = min(wait, next_tick - now) if wait is not None else next_tick - now
            self._sleep_until = now + max(0.0, timeout)
            self._wake.clear()
            # A timer handle, not wait_for: this runs per batch and wait_for costs a task.
            timer = asyncio.get_running_loop().call_at(self._sleep_until, self._wake.set)
            await self._wake.wait()
            timer.cancel()

    def _start(self, batch: Batch, now: float) -> None:
        # Counted here, synchronously: the task below starts later, and the loop must not
        # hand out more batches than the replicas can take in the meantime.
        self.running_batches += 1
        self.running_requests += len(batch.items)
        self._queue_depth.set(len(self.batcher))
        self.metrics.batch_rows.labels(*self._labels).observe(batch.rows)
        queue_hist = self.metrics.queue_seconds.labels(*self._labels)
        for pending in batch.items:
            queue_hist.observe(now - pending.enqueued_at)
        task = asyncio.create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: Batch) -> None:
        try:
            timeout = self.config.request_timeout_ms / 1000
            outputs, compute_s = await self.pool.run(
                batch.inputs, list(batch.outputs) if batch.outputs else None, timeout
            )
            self.metrics.compute_seconds.labels(*self._labels).observe(compute_s)
            for pending, part in zip(batch.items, batch.split(outputs), strict=True):
                future: Result = pending.token  # type: ignore[assignment]
                if not future.done():
                    future.set_result(part)
        except ModelbayError as exc:
            for pending in batch.items:
                self._fail(pending, exc)
        except Exception:
            log.exception("batch of %s failed", self._labels)
            for pending in batch.items:
                self._fail(pending, ModelbayError("the batch failed on the server"))
        finally:
            self.running_batches -= 1
            self.running_requests -= len(batch.items)
            self.batcher.complete(batch, time.monotonic())
            self._wake.set()

    def _fail(self, pending: Pending, exc: ModelbayError) -> None:
        future: Result = pending.token  # type: ignore[assignment]
        if not future.done():
            # One exception object per waiter: raising it attaches a traceback to it.
            future.set_exception(
                type(exc)(exc.message, status=exc.status, retry_after=exc.retry_after)
            )

    def _autoscale(self, now: float) -> None:
        inflight, last = self._load(now)
        sample = LoadSample(now, inflight, self.pool.size, last)
        desired = self.autoscaler.observe(sample)
        if desired != self.pool.desired or self.pool.size < desired:
            self.pool.scale(desired)
