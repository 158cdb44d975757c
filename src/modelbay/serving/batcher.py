"""Dynamic batching for one deployment version: a pure state machine, time passed in.

The asyncio loop around it adds requests, sleeps ``wait_time(now)`` unless woken by an add,
runs ``next_batch(now)`` on a replica, answers ``expired(now)`` with 504 and reports each
finished batch with ``complete(batch, now)``; nothing here waits, locks or reads a clock.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

BatchKey = tuple[tuple[str, str, tuple[int, ...]], ...]

_MIN_RETRY_AFTER_S = 0.05
# A stalled replica must not tell refused clients to stay away for hours.
_MAX_RETRY_AFTER_S = 60.0
_EWMA_WEIGHT = 0.2


class QueueFull(Exception):
    """The queue is at capacity; ``retry_after_s`` estimates when the backlog is served."""

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(eq=False)
class Pending:
    """One queued request: ``inputs`` share their first dimension (``rows``), and requests
    batch together only when their ``key`` (names, dtypes, trailing shapes) is equal.

    ``token`` is opaque to the batcher (the loop keeps its future there) and names the
    request in ``cancel``; ``outputs`` None or empty means all outputs.
    """

    inputs: dict[str, np.ndarray]
    rows: int = field(init=False)
    key: BatchKey = field(init=False)
    enqueued_at: float
    deadline: float | None = None
    token: object = field(default_factory=object)
    outputs: tuple[str, ...] | None = None
    alone: bool = False
    """Never batched with another request (a model whose tensors have no batch axis)."""

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("a request needs at least one input")
        if not self.outputs:
            self.outputs = None
        if self.alone:
            self.rows = 1
            self.key = (("", str(id(self.token)), ()),)
            return
        rows: dict[str, int] = {}
        for name, array in self.inputs.items():
            if array.ndim == 0:
                raise ValueError(f"input {name!r} is a scalar; batched inputs need a first dim")
            rows[name] = array.shape[0]
        if len(set(rows.values())) > 1:
            counts = ", ".join(f"{name!r} has {n}" for name, n in rows.items())
            raise ValueError(f"inputs disagree on their number of rows: {counts}")
        self.rows = next(iter(rows.values()))
        self.key = tuple(
            sorted((name, a.dtype.str, tuple(a.shape[1:])) for name, a in self.inputs.items())
        )


@dataclass(eq=False)
class Batch:
    """Requests run together: ``inputs`` concatenated along axis 0 in ``items`` order, and
    ``outputs`` the union of what they asked for (None when any wants all)."""

    items: list[Pending]
    inputs: dict[str, np.ndarray]
    outputs: tuple[str, ...] | None
    rows: int

    @classmethod
    def of(cls, items: list[Pending]) -> Batch:
        """The batch of ``items``, which share one key; a lone request's arrays are not copied."""
        if not items:
            raise ValueError("a batch needs at least one request")
        if len(items) == 1:
            inputs = dict(items[0].inputs)
        else:
            inputs = {n: np.concatenate([p.inputs[n] for p in items]) for n in items[0].inputs}
        rows = sum(p.rows for p in items)
        if any(p.outputs is None for p in items):
            return cls(items, inputs, None, rows)
        wanted = dict.fromkeys(name for p in items for name in p.outputs or ())
        return cls(items, inputs, tuple(wanted), rows)

    def split(self, outputs: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Each request's rows of ``outputs`` (views, not copies), limited to what it asked."""
        if len(self.items) == 1 and self.items[0].alone:
            only = self.items[0]
            names = only.outputs if only.outputs is not None else tuple(outputs)
            missing = [n for n in names if n not in outputs]
            if missing:
                raise ValueError(f"output {missing[0]!r} not returned")
            return [{n: outputs[n] for n in names}]
        for name, array in outputs.items():
            if array.ndim == 0 or array.shape[0] != self.rows:
                got = "a scalar" if array.ndim == 0 else f"{array.shape[0]} rows"
                raise ValueError(f"output {name!r} has {got}; the batch has {self.rows} rows")
        result: list[dict[str, np.ndarray]] = []
        start = 0
        for p in self.items:
            stop = start + p.rows
            names = p.outputs if p.outputs is not None else tuple(outputs)
            missing = [n for n in names if n not in outputs]
            if missing:
                returned = ", ".join(repr(n) for n in outputs) or "none"
                raise ValueError(f"output {missing[0]!r} not returned; outputs are {returned}")
            result.append({n: outputs[n][start:stop] for n in names})
            start = stop
        return result


class Batcher:
    """Queues requests per batching key and hands out batches of at most ``max_batch_size``
    rows, FIFO across keys by each key's oldest request.

    A key is ready when its queued rows reach ``max_batch_size`` or its oldest request has
    waited ``max_delay_s``; ``next_batch`` takes the ready key with the oldest request and
    fills the batch from it in arrival order, stopping before a request that would overflow
    it (requests are never split or reordered, so one larger than ``max_batch_size`` runs
    alone). A request whose deadline is <= now is never batched: it leaves the queue and is
    returned once by ``expired``. ``add`` raises ``QueueFull`` beyond ``capacity`` requests.
    """

    def __init__(self, max_batch_size: int, max_delay_s: float, capacity: int):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_delay_s < 0:
            raise ValueError(f"max_delay_s must be >= 0, got {max_delay_s}")
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.capacity = capacity
        # Cancelled and expired requests stay in their deque and heap until reached
        # (lazy deletion); `_queued` (by id of token) says which entries are still live.
        # Invariant: each deque's head is live and no deque is empty.
        self._queues: dict[BatchKey, deque[tuple[int, Pending]]] = {}
        self._queued: dict[int, Pending] = {}
        self._key_rows: dict[BatchKey, int] = {}
        self._deadlines: list[tuple[float, int, Pending]] = []
        self._expired: list[Pending] = []
        self._running: dict[int, tuple[Batch, float]] = {}
        self._batch_s: float | None = None
        self._seq = 0

    def __len__(self) -> int:
        return len(self._queued)

    @property
    def queued_rows(self) -> int:
        """Rows waiting in the queue."""
        return sum(self._key_rows.values())

    @property
    def running(self) -> int:
        """Requests handed out by ``next_batch`` and not yet reported by ``complete``."""
        return sum(len(batch.items) for batch, _ in self._running.values())

    def oldest_wait(self, now: float) -> float:
        """How long the oldest queued request has waited (0.0 when the queue is empty)."""
        if not self._queues:
            return 0.0
        return max(0.0, now - min(q[0][1].enqueued_at for q in self._queues.values()))

    def add(self, pending: Pending) -> None:
        """Queue a request, or raise ``QueueFull`` (nothing queued) if at capacity."""
        if len(self._queued) >= self.capacity:
            raise QueueFull(
                f"queue full: {len(self._queued)} requests waiting (capacity {self.capacity})",
                self._retry_after(),
            )
        if id(pending.token) in self._queued:
            raise ValueError("a request with this token is already queued")
        self._seq += 1
        self._queued[id(pending.token)] = pending
        self._queues.setdefault(pending.key, deque()).append((self._seq, pending))
        self._key_rows[pending.key] = self._key_rows.get(pending.key, 0) + pending.rows
        if pending.deadline is not None:
            heapq.heappush(self._deadlines, (pending.deadline, self._seq, pending))

    def cancel(self, token: object) -> bool:
        """Drop the queued request holding ``token``; False if it is not queued (any more)."""
        pending = self._queued.get(id(token))
        if pending is None or pending.token is not token:
            return False
        self._forget(pending)
        return True

    def take_all(self) -> list[Pending]:
        """Remove and return every queued request (to fail them), oldest first."""
        out = sorted(self._queued.values(), key=lambda p: p.enqueued_at)
        for pending in out:
            self._forget(pending)
        return out

    def expired(self, now: float) -> list[Pending]:
        """Remove and return the requests whose deadline is <= now, each exactly once."""
        self._expire(now)
        out, self._expired = self._expired, []
        return out

    def next_batch(self, now: float) -> Batch | None:
        """The batch to run now, or None when no key is ready."""
        self._expire(now)
        # Same expression as in `wait_time`, so that waking at its answer finds the key ready.
        ready = [
            (q[0][1].enqueued_at, q[0][0], key)
            for key, q in self._queues.items()
            if self._key_rows[key] >= self.max_batch_size
            or now >= q[0][1].enqueued_at + self.max_delay_s
        ]
        if not ready:
            return None
        key = min(ready)[2]
        queue = self._queues[key]
        items: list[Pending] = []
        rows = 0
        # The head is live (invariant), and `_forget` keeps it so after each pop.
        while queue and (not items or rows + queue[0][1].rows <= self.max_batch_size):
            pending = queue.popleft()[1]
            items.append(pending)
            rows += pending.rows
            self._forget(pending)
        batch = Batch.of(items)
        self._running[id(batch)] = (batch, now)
        return batch

    def complete(self, batch: Batch, now: float) -> None:
        """Record that ``batch`` finished or failed (call once per batch from ``next_batch``);
        its run time feeds ``QueueFull.retry_after_s``."""
        entry = self._running.pop(id(batch), None)
        if entry is None or entry[0] is not batch:
            raise ValueError("complete() of a batch that is not running")
        took = max(0.0, now - entry[1])
        self._batch_s = (
            took
            if self._batch_s is None
            else (1 - _EWMA_WEIGHT) * self._batch_s + _EWMA_WEIGHT * took
        )

    def wait_time(self, now: float) -> float | None:
        """Seconds until a key becomes ready by age or a deadline passes: 0 if something
        is due now, None if nothing is queued or waiting to be reported as expired."""
        if self._expired:
            return 0.0
        if not self._queues:
            return None
        due = min(q[0][1].enqueued_at for q in self._queues.values()) + self.max_delay_s
        if any(rows >= self.max_batch_size for rows in self._key_rows.values()):
            due = now
        self._drop_stale_deadlines()
        if self._deadlines:
            due = min(due, self._deadlines[0][0])
        return max(0.0, due - now)

    def _retry_after(self) -> float:
        # Refused clients should come back once the backlog they would have joined is
        # served, not all at once at the first free slot.
        floor = max(_MIN_RETRY_AFTER_S, self.max_delay_s)
        if self._batch_s is None:
            return floor
        batches = math.ceil(self.queued_rows / self.max_batch_size)
        # When the queue is full every replica is busy, so running batches count replicas.
        drain = batches * self._batch_s / max(1, len(self._running))
        return min(max(floor, drain), _MAX_RETRY_AFTER_S)

    def _expire(self, now: float) -> None:
        self._drop_stale_deadlines()
        while self._deadlines and self._deadlines[0][0] <= now:
            pending = heapq.heappop(self._deadlines)[2]
            self._forget(pending)
            self._expired.append(pending)
            self._drop_stale_deadlines()

    def _drop_stale_deadlines(self) -> None:
        heap = self._deadlines
        while heap and self._queued.get(id(heap[0][2].token)) is not heap[0][2]:
            heapq.heappop(heap)
        # Batched requests leave stale entries behind; rebuild before they dominate.
        if len(heap) > 64 and len(heap) > 2 * len(self._queued):
            self._deadlines = [e for e in heap if self._queued.get(id(e[2].token)) is e[2]]
            heapq.heapify(self._deadlines)

    def _forget(self, pending: Pending) -> None:
        """Mark ``pending`` no longer queued; its deque entry goes when it reaches the head."""
        del self._queued[id(pending.token)]
        self._key_rows[pending.key] -= pending.rows
        self._prune(pending.key)

    def _prune(self, key: BatchKey) -> None:
        queue = self._queues.get(key)
        if queue is None:
            return
        while queue and self._queued.get(id(queue[0][1].token)) is not queue[0][1]:
            queue.popleft()
        if not queue:
            del self._queues[key]
            del self._key_rows[key]
