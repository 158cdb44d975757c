"""References to versions (numbers, aliases, ``latest``) resolved for the request path.

Resolutions are kept in a short-lived in-memory cache so the request path does not query
the registry each time; the catalog invalidates it on every local change, and the TTL
bounds staleness when several frontends share one database. Nothing here loads a model:
versions run in replica processes (see ``controller``).
"""

from __future__ import annotations

import threading
import time

from modelbay.registry import Registry, VersionRecord, parse_ref

_RESOLVE_TTL_S = 2.0

Resolved = tuple[VersionRecord, list[str] | None]
"""A version's record and its model's labels."""


class ModelResolver:
    """Resolves references through the registry, cached for ``_RESOLVE_TTL_S``."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self._resolved: dict[tuple[str, str | int], tuple[float, VersionRecord, list[str] | None]]
        self._resolved = {}
        self._resolve_locks: dict[tuple[str, str | int], threading.Lock] = {}
        self._lock = threading.Lock()
        self._generation = 0  # counts invalidations: an older read is not cached after one

    def resolve(self, name: str, ref: str | int = "latest") -> Resolved:
        """The version a reference names now, and the model's labels (blocking)."""
        fresh = self.peek(name, ref)
        if fresh is not None:
            return fresh
        key = (name, parse_ref(ref))
        with self._lock:
            lock = self._resolve_locks.setdefault(key, threading.Lock())
        with lock:  # one registry read per expiry, however many requests arrive meanwhile
            fresh = self.peek(name, ref)
            if fresh is not None:
                return fresh
            return self.refresh(name, ref)

    def refresh(self, name: str, ref: str | int = "latest") -> Resolved:
        """Read the reference from the registry (not the cache) and cache it, unless the
        cache was invalidated meanwhile (an alias may have moved after this read)."""
        key = (name, parse_ref(ref))
        generation = self._generation
        record = self.registry.get_version(name, key[1])
        labels = self.registry.get_model(name).labels
        with self._lock:
            if generation == self._generation:
                self._resolved[key] = (time.monotonic(), record, labels)
        return record, labels

    def due(self, name: str, ref: str | int) -> bool:
        """Whether the cached reference is fresh but past half its lifetime (time to read
        it again in the background, before requests have to wait for it)."""
        hit = self._resolved.get((name, parse_ref(ref)))
        return hit is not None and _RESOLVE_TTL_S / 2 < time.monotonic() - hit[0] < _RESOLVE_TTL_S

    def peek(self, name: str, ref: str | int) -> Resolved | None:
        """What ``resolve`` would answer, if it is cached and fresh (no I/O)."""
        hit = self._resolved.get((name, parse_ref(ref)))
        if hit is None or time.monotonic() - hit[0] >= _RESOLVE_TTL_S:
            return None
        return hit[1], hit[2]

    def invalidate(self, name: str) -> None:
        """Forget cached references of a model (after alias moves, pushes, deletes)."""
        with self._lock:
            self._generation += 1
        for key in [k for k in self._resolved if k[0] == name]:
            self._resolved.pop(key, None)
        with self._lock:
            for key in [k for k in self._resolve_locks if k[0] == name]:
                self._resolve_locks.pop(key, None)

    def invalidate_all(self) -> None:
        """Forget every cached reference (another frontend changed some)."""
        with self._lock:
            self._generation += 1
        self._resolved.clear()
