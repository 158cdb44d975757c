"""Change counters shared by the frontends of one data directory, in a memory-mapped file.

A frontend that changes something other frontends cache (keys, tenants, shares, models,
aliases, deployments) bumps its domain's counter; every frontend compares the counters
on each request (a read of 32 bytes of shared memory) and drops the caches of the domains
that moved. Frontends on other machines sharing the database still rely on the caches'
short TTLs.
"""

from __future__ import annotations

import enum
import fcntl
import os
import struct
from collections.abc import Callable
from pathlib import Path

from modelbay.frontends.shared_table import map_file


class Domain(enum.IntEnum):
    """What a counter covers."""

    ACCESS = 0
    """Keys, accounts, tenants and their limits, model owners and shares."""
    MODELS = 1
    """Versions and aliases (what a reference resolves to)."""
    DEPLOYMENTS = 2
    """Deployment rows (the leader reconciles at once)."""
    USAGE = 3
    """A usage report is wanted: write what was counted to the database now."""


USAGE_SETTLE_S = 0.3
"""How long a usage report waits for the other frontends to write their counts (they
look at the counters every 0.1 s; a write takes milliseconds)."""


_SLOTS = 4
_LAYOUT = struct.Struct(f"<{_SLOTS}Q")
_SIZE = 4096


class SharedEpochs:
    """The counters of one data directory; ``sync`` runs the handlers of moved domains."""

    def __init__(self, path: Path):
        self._fd, self._map = map_file(path, _SIZE)
        self._seen = self._read()
        self._handlers: dict[Domain, list[Callable[[], None]]] = {d: [] for d in Domain}

    def on_change(self, domain: Domain, handler: Callable[[], None]) -> None:
        """Call ``handler`` when another frontend bumps ``domain``."""
        self._handlers[domain].append(handler)

    def bump(self, domain: Domain) -> None:
        """Tell the other frontends that ``domain`` changed (this one already knows)."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            values = list(_LAYOUT.unpack_from(self._map))
            values[domain] += 1
            _LAYOUT.pack_into(self._map, 0, *values)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._seen = self._seen[:domain] + (self._seen[domain] + 1,) + self._seen[domain + 1 :]

    def sync(self) -> None:
        """Run the handlers of every domain another frontend bumped since the last sync."""
        now = self._read()
        if now == self._seen:
            return
        before, self._seen = self._seen, now
        for domain in Domain:
            if now[domain] != before[domain]:
                for handler in self._handlers[domain]:
                    handler()

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    def _read(self) -> tuple[int, ...]:
        return _LAYOUT.unpack_from(self._map)
