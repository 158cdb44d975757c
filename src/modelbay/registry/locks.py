"""A lock held across every process that shares the registry, for blob garbage collection.

"Blobs in, rows in" (a push) and "rows out, blobs out" (a delete) must not interleave, or a
delete can remove a blob that a concurrent push, in another frontend, has just reused. On
PostgreSQL the lock is a session-level advisory lock, so frontends on other machines sharing
the database and the blob store are covered; on SQLite, whose frontends share one machine, it
is an exclusive ``flock`` on a file beside the database.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

GC_LOCK_ID = 0x6D62_6763  # "mbgc": one advisory lock number, the same in every frontend


class RegistryLock:
    """An exclusive lock over the registry's processes; also excludes threads of one."""

    def __init__(self, engine: Engine):
        self._engine = engine
        database = engine.url.database
        self._file: Path | None = None
        if engine.dialect.name == "sqlite":
            memory = database in (None, "", ":memory:")
            self._file = None if memory else Path(f"{database}.gc-lock")

    @contextmanager
    def held(self) -> Iterator[None]:
        if self._engine.dialect.name == "postgresql":
            with self._engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": GC_LOCK_ID})
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": GC_LOCK_ID})
                    conn.commit()
            return
        if self._file is None:  # an in-memory database lives in one process
            yield
            return
        # A new open file description each time: flock then excludes threads too.
        fd = os.open(self._file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock
