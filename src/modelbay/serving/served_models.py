"""Models loaded for serving, keyed by (model, version), and the in-process inference path.

References (version numbers, aliases, ``latest``) are resolved through a short-lived
in-memory cache so the request path does not query the registry each time; the catalog
invalidates it on every local change, and the TTL bounds staleness when several
frontends share one database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from modelbay.registry import Registry, VersionRecord, parse_ref
from modelbay.runtimes import Runtime
from modelbay.serving.loading import load_version
from modelbay.store.base import ArtifactStore
from modelbay.tensors import Signature

_RESOLVE_TTL_S = 2.0


@dataclass
class LoadedModel:
    """A version ready to run: its runtime plus what the protocols report about it."""

    name: str
    version: int
    format: str
    runtime: Runtime
    labels: list[str] | None

    @property
    def signature(self) -> Signature:
        return self.runtime.signature

    def infer(
        self, inputs: dict[str, np.ndarray], outputs: Collection[str] | None = None
    ) -> dict[str, np.ndarray]:
        return self.runtime.infer(inputs, outputs)


class ServedModels:
    """Loads versions on first use (or at push) and keeps them until deleted."""

    def __init__(self, registry: Registry, store: ArtifactStore, *, threads: int):
        self.registry = registry
        self.store = store
        self.threads = threads
        self._loaded: dict[tuple[str, int], LoadedModel] = {}
        self._resolved: dict[tuple[str, str | int], tuple[float, VersionRecord, list[str] | None]]
        self._resolved = {}
        self._load_locks: dict[tuple[str, int], threading.Lock] = {}
        self._resolve_locks: dict[tuple[str, str | int], threading.Lock] = {}
        self._lock = threading.Lock()

    def resolve(
        self, name: str, ref: str | int = "latest"
    ) -> tuple[VersionRecord, list[str] | None]:
        """The version a reference names now, and the model's labels."""
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
            record = self.registry.get_version(name, key[1])
            labels = self.registry.get_model(name).labels
            self._resolved[key] = (time.monotonic(), record, labels)
            return record, labels

    def peek(self, name: str, ref: str | int) -> tuple[VersionRecord, list[str] | None] | None:
        """What ``resolve`` would answer, if it is cached and fresh (no I/O)."""
        hit = self._resolved.get((name, parse_ref(ref)))
        if hit is None or time.monotonic() - hit[0] >= _RESOLVE_TTL_S:
            return None
        return hit[1], hit[2]

    def cached(self, name: str, ref: str | int) -> LoadedModel | None:
        """The loaded model for a reference if everything is in memory (no I/O)."""
        hit = self.peek(name, ref)
        return None if hit is None else self._loaded.get((name, hit[0].version))

    def get(self, name: str, ref: str | int = "latest") -> LoadedModel:
        """Resolve and load (blocking: call from a worker thread)."""
        cached = self.cached(name, ref)
        if cached is not None:
            return cached
        record, labels = self.resolve(name, ref)
        key = (name, record.version)
        with self._lock:
            lock = self._load_locks.setdefault(key, threading.Lock())
        with lock:
            loaded = self._loaded.get(key)
            if loaded is None:
                loaded = LoadedModel(
                    name,
                    record.version,
                    record.format,
                    load_version(self.store, record, threads=self.threads),
                    labels,
                )
                self._loaded[key] = loaded
            loaded.labels = labels
            return loaded

    def add(self, name: str, version: int, runtime: Runtime) -> None:
        """Keep a runtime that the catalog already loaded at push time."""
        self.invalidate(name)
        record, labels = self.resolve(name, version)
        self._loaded[(name, version)] = LoadedModel(name, version, record.format, runtime, labels)

    def remove(self, name: str, version: int | None) -> None:
        """Unload one version, or all versions of a model when ``version`` is None."""
        self.invalidate(name)
        for key in [k for k in self._loaded if k[0] == name and version in (None, k[1])]:
            self._loaded.pop(key).runtime.unload()

    def invalidate(self, name: str) -> None:
        """Forget cached references of a model (after alias moves, pushes, deletes)."""
        for key in [k for k in self._resolved if k[0] == name]:
            self._resolved.pop(key, None)

    def close(self) -> None:
        for loaded in self._loaded.values():
            loaded.runtime.unload()
        self._loaded.clear()
