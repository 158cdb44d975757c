"""A small hash table of float triples in a memory-mapped file, shared by the frontends.

Rate-limit buckets and the request counts not yet written to the database live here when
several frontends serve one data directory, so a limit holds for the server as a whole,
not per process. Every access happens under one file lock (``locked``); a slot is keyed
by a 64-bit hash of its name. When the table is full, a name takes its home slot over
(the limit it held restarts from full: never stricter than configured).
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_SLOT = struct.Struct("<Q3d")
_SLOTS = 8192
_PROBES = 16


def map_file(path: Path, size: int) -> tuple[int, mmap.mmap]:
    """Open (creating, 0600) a file of at least ``size`` bytes and map it: (fd, map)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return fd, mmap.mmap(fd, size)
    except BaseException:
        os.close(fd)
        raise


def _hash(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little") or 1


class SharedTable:
    """Named triples ``(a, b, c)`` shared by every process that opens the same file."""

    def __init__(self, path: Path, slots: int = _SLOTS):
        self.slots = slots
        self._fd, self._map = map_file(path, slots * _SLOT.size)

    @contextmanager
    def locked(self) -> Iterator[SharedTable]:
        """Hold the table's lock: reads and writes inside see no other process's."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield self
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def get(self, name: str) -> tuple[float, float, float] | None:
        """The triple stored under ``name`` (hold ``locked``)."""
        found = self._find(_hash(name))
        if found is None or not found[1]:
            return None
        _, a, b, c = _SLOT.unpack_from(self._map, found[0])
        return a, b, c

    def put(self, name: str, a: float, b: float, c: float) -> None:
        """Store a triple under ``name`` (hold ``locked``)."""
        key = _hash(name)
        found = self._find(key)
        offset = found[0] if found is not None else self._home(key)
        _SLOT.pack_into(self._map, offset, key, a, b, c)

    def clear(self) -> None:
        """Forget every name (hold ``locked``)."""
        self._map[:] = bytes(len(self._map))

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    def _home(self, key: int) -> int:
        return (key % self.slots) * _SLOT.size

    def _find(self, key: int) -> tuple[int, bool] | None:
        """(offset, taken) of ``key``'s slot, or of the first free one on its probe path."""
        for probe in range(_PROBES):
            offset = ((key + probe) % self.slots) * _SLOT.size
            stored = int.from_bytes(self._map[offset : offset + 8], "little")
            if stored == key:
                return offset, True
            if stored == 0:
                return offset, False
        return None
