"""Blocking reads behind the request path's caches, one at a time per key.

The request path keeps keys, models' owners and version references in short-lived caches.
When an entry expires under load, every request in flight used to miss at once and start its
own read in a thread: 64 clients made 64 database reads and 64 thread hand-offs in the same
millisecond, every few seconds, and those requests waited for them. ``Flights`` runs one read
per key: the requests that come while it runs await the same result. The caches also refresh
an entry that is still fresh but past half its lifetime in the background
(``Flights.start``), so an entry in steady use is renewed before anyone waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class Flights:
    """Blocking calls run in the loop's executor, at most one at a time per key."""

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Future[Any]] = {}

    async def call(self, key: Hashable, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)``'s result, or that of the call for ``key`` already running.

        A caller that is cancelled leaves the call running for the others."""
        result: _T = await asyncio.shield(self._flight(key, fn, *args))
        return result

    def start(self, key: Hashable, fn: Callable[..., Any], *args: Any) -> None:
        """Start ``fn(*args)`` unless a call for ``key`` runs; nobody waits for it (a
        refresh ahead of expiry). A failure is logged; the cache then expires as usual."""
        if key not in self._running:
            self._flight(key, fn, *args).add_done_callback(_log_failure)

    def running(self, key: Hashable) -> bool:
        return key in self._running

    def _flight(self, key: Hashable, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        flight = self._running.get(key)
        if flight is None:
            flight = asyncio.ensure_future(asyncio.to_thread(fn, *args))
            self._running[key] = flight
            flight.add_done_callback(lambda done: self._landed(key, done))
        return flight

    def _landed(self, key: Hashable, flight: asyncio.Future[Any]) -> None:
        if self._running.get(key) is flight:
            del self._running[key]


def _log_failure(flight: asyncio.Future[Any]) -> None:
    if flight.cancelled():
        return
    exc = flight.exception()
    if exc is not None and not getattr(exc, "status", None):  # a 4xx is an answer, not a fault
        log.warning("refreshing a cached entry failed: %s", exc)
