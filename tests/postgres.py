"""A throwaway PostgreSQL server for the tests: initdb in a temp dir, on a free port."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _bin_dir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Cluster:
    """A PostgreSQL cluster in a temp dir, on a free port; ``stop`` takes it down early."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="modelbay-pg-"))
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.data, self.port = self.root / "data", _free_port()
        self.url = f"postgresql+psycopg://modelbay@127.0.0.1:{self.port}/postgres"
        self.running = False

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "modelbay")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.root / "log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        self.running = True

    def stop(self) -> None:
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
            self.running = False

    def _run(self, tool: str, *args: str) -> None:
        command = [*self.prefix, str(self.bin_dir / tool), *args]
        subprocess.run(command, check=True, capture_output=True, timeout=120)


@contextmanager
def postgres_cluster() -> Iterator[Cluster | None]:
    """A running cluster, or None when no PostgreSQL server binaries are installed."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        yield None
        return
    cluster = Cluster(bin_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[str | None]:
    """Yields a SQLAlchemy URL, or None when no PostgreSQL server binaries are installed."""
    with postgres_cluster() as cluster:
        yield None if cluster is None else cluster.url
