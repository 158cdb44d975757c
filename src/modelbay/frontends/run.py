"""The run directory of a data directory: who leads, where the leader listens.

``<data dir>/run/`` (0700) holds ``leader.lock`` (held with ``flock`` by the leader for as
long as it lives: the kernel releases it when the process dies, however it dies),
``leader.json`` (the leader's control socket) and the shared ``epochs`` and ``table``
files. Sockets live in a short private directory under the system's temporary directory
(Unix socket paths are limited to 107 bytes); ``leader.json`` says which.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import orjson


class RunDir:
    """One frontend's view of the run directory."""

    def __init__(self, data_dir: Path):
        self.path = data_dir / "run"
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_fd: int | None = None
        self.sockets: Path | None = None

    @property
    def epochs_file(self) -> Path:
        return self.path / "epochs"

    @property
    def table_file(self) -> Path:
        return self.path / "table"

    def try_lead(self) -> bool:
        """Take the leader lock if no live frontend holds it."""
        if self._lock_fd is not None:
            return True
        fd = os.open(self.path / "leader.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        self.sockets = Path(tempfile.mkdtemp(prefix="mb-"))
        return True

    def publish(self, control: str) -> None:
        """Say where the leader's control socket is (written atomically)."""
        tmp = self.path / f"leader.json.{os.getpid()}"
        tmp.write_bytes(orjson.dumps({"control": control, "pid": os.getpid()}))
        tmp.replace(self.path / "leader.json")

    def leader(self) -> dict[str, Any] | None:
        """What the leader published, if anything."""
        try:
            data: dict[str, Any] = orjson.loads((self.path / "leader.json").read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None
        return data

    def close(self) -> None:
        if self.sockets is not None:
            shutil.rmtree(self.sockets, ignore_errors=True)
            self.sockets = None
        if self._lock_fd is not None:
            with contextlib.suppress(FileNotFoundError):
                if (self.leader() or {}).get("pid") == os.getpid():
                    (self.path / "leader.json").unlink()
            os.close(self._lock_fd)
            self._lock_fd = None
