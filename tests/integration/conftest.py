"""The real server, started as ``modelbay serve`` on a free 127.0.0.1 port."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.integration import http
from tests.integration.http import ADMIN_KEY


class RunningServer:
    """A ``modelbay serve`` subprocess; ``restart`` keeps the data directory.

    With ``MODELBAY_TLS_CERT_FILE`` in ``env`` it serves https, and ``verify`` trusts ``ca_cert``.
    """

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        env: dict[str, str] | None = None,
        ca_cert: Path | None = None,
        workers: int = 1,
    ):
        self.data_dir = data_dir
        self.extra_env = env or {}
        self.log_path = log_path
        self.port, self.grpc_port = _free_ports(2)
        self.scheme = "https" if "MODELBAY_TLS_CERT_FILE" in self.extra_env else "http"
        self.verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=ca_cert) if ca_cert else True
        )
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.workers = workers
        """Frontend processes (``--workers``)."""

    def start(self) -> None:
        # The server's settings come from this fixture only, not from the caller's shell.
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELBAY_")}
        env.update(
            HF_HUB_OFFLINE="1",
            MODELBAY_LOG_LEVEL=os.environ.get("TEST_SERVER_LOG", "warning"),
            MODELBAY_ADMIN_KEY=ADMIN_KEY,
        )
        # Every test client is 127.0.0.1: tests that look for their refusals in the audit
        # log need each one audited, not summed up with the session's others.
        env.update(
            MODELBAY_AUDIT_REFUSALS_PER_CLIENT="1000000", MODELBAY_AUDIT_REFUSALS_TOTAL="1000000"
        )
        env.update(self.extra_env)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "modelbay",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--grpc-port",
                    str(self.grpc_port),
                    "--data-dir",
                    str(self.data_dir),
                    "--workers",
                    str(self.workers),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                ready = httpx.get(f"{self.url}/v2/health/ready", timeout=2, verify=self.verify)
                if ready.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready in 60 s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def push(self, name: str, path: Path, **data: str) -> dict[str, Any]:
        """Upload a version and return its record; the upload must succeed."""
        response = upload(self.url, name, path, **data)
        assert response.status_code == 201, response.text
        record: dict[str, Any] = response.json()
        return record

    def frontends(self) -> list[int]:
        """The processes that serve HTTP: ``modelbay serve`` itself, or with several
        workers, the frontend processes of uvicorn's supervisor."""
        assert self.process is not None
        if self.workers == 1:
            return [self.process.pid]
        found = []
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                cmdline = cmdline_of(child)
                if b"multiprocessing-fork" in cmdline and b"resource_tracker" not in cmdline:
                    found.append(int(child))
        return found

    def log(self) -> str:
        return self.log_path.read_text()

    def tenant(self, name: str, **limits: Any) -> None:
        """Make sure tenant ``name`` exists (created with ``limits`` if it did not)."""
        response = http.post(
            f"{self.url}/api/v1/tenants", json={"name": name, **limits}, verify=self.verify
        )
        assert response.status_code in (201, 409), response.text

    def key(self, role: str, tenant: str = "default", **fields: Any) -> str:
        """A new API key's secret (the tenant is created when missing)."""
        self.tenant(tenant)
        response = http.post(
            f"{self.url}/api/v1/keys",
            json={"name": f"{role}-test", "role": role, "tenant": tenant, **fields},
            verify=self.verify,
        )
        assert response.status_code == 201, response.text
        secret: str = response.json()["secret"]
        return secret


def cmdline_of(pid: str | int) -> bytes:
    """A process's command line, NUL-separated (empty once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


def upload(
    url: str, name: str, path: Path, headers: dict[str, str] | None = None, **data: str
) -> httpx.Response:
    """POST one model file as a new version of ``name`` (multipart, as the CLI does)."""
    with open(path, "rb") as f:
        return http.post(
            f"{url}/api/v1/models/{name}/versions",
            files={"files": (path.name, f)},
            data=data,
            headers=headers,
            timeout=60,  # the first push loads the framework; slow on a loaded machine
        )


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: all held at once while chosen, so no two are the same."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="session", autouse=True)
def _admin_key_for_clients() -> Iterator[None]:
    """The SDK and the CLI (also as subprocesses) read ``MODELBAY_API_KEY``."""
    previous = os.environ.get("MODELBAY_API_KEY")
    os.environ["MODELBAY_API_KEY"] = ADMIN_KEY
    yield
    if previous is None:
        os.environ.pop("MODELBAY_API_KEY", None)
    else:
        os.environ["MODELBAY_API_KEY"] = previous


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server shared by the session's tests; tests use their own model names."""
    root = tmp_path_factory.mktemp("server")
    # Two frontend processes: what one of them is asked, the other must know at once.
    running = RunningServer(root / "data", root / "server.log", workers=2)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A server of the test's own, for restarts and on-disk tampering."""
    running = RunningServer(tmp_path / "data", tmp_path / "server.log")
    running.start()
    yield running
    running.stop()


@pytest.fixture
def postgres_server(postgres_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    """A server of the test's own whose registry is the session's PostgreSQL database."""
    running = RunningServer(
        tmp_path / "data", tmp_path / "server.log", env={"MODELBAY_DATABASE_URL": postgres_url}
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[RunningServer]:
    """A server with no embedded job worker and a 3 s lease, digits pushed as ``digits``:
    the test starts workers (``start_worker``) and kills them."""
    from tests.integration.cli import modelbay, ok

    running = RunningServer(
        tmp_path / "data",
        tmp_path / "server.log",
        env={"MODELBAY_JOB_WORKERS": "0", "MODELBAY_JOB_LEASE_S": "3"},
    )
    running.start()
    ok(modelbay(running.url, "datasets", "push", "sklearn:digits", "--name", "digits"))
    yield running
    running.stop()


def finish_on_a_new_worker(server: RunningServer, log: Path, job: int) -> dict[str, Any]:
    """Start another worker, wait for ``job`` to end (it resumes it), then stop that worker;
    the finished job."""
    from modelbay.client import Client

    worker = start_worker(server, log)
    try:
        with Client(server.url, ADMIN_KEY) as client:
            return client.wait_job(job, timeout=300)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)


def start_worker(server: RunningServer, log: Path) -> subprocess.Popen[bytes]:
    """A ``modelbay worker`` process on ``server``'s data directory (3 s lease)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELBAY_")}
    env.update(MODELBAY_JOB_LEASE_S="3", MODELBAY_JOB_POLL_S="0.2")
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "modelbay", "worker", "--data-dir", str(server.data_dir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
