"""The job workers ``modelbay serve`` runs beside its frontends: ``modelbay worker``
processes, restarted if one dies, stopped (their running jobs given back to the queue)
when the server stops."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading

from pydantic import SecretStr

from modelbay.settings import Settings

log = logging.getLogger("modelbay.jobs")

RESTART_DELAY_S = 2.0
STOP_GRACE_S = 10.0


def settings_environment(settings: Settings) -> dict[str, str]:
    """The environment a child process reads the same settings from."""
    env = dict(os.environ)
    for name, value in settings.model_dump(exclude_none=True).items():
        if not isinstance(value, SecretStr):  # secrets come from the environment already
            env[f"MODELBAY_{name.upper()}"] = str(value)
    return env


class EmbeddedWorkers:
    """``settings.job_workers`` worker processes, supervised by a thread."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * settings.job_workers
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self._procs:
            return
        self._thread = threading.Thread(target=self._supervise, name="job-workers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        for proc in self._procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # it gives its running job back to the queue
        for proc in self._procs:
            if proc is None:
                continue
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=STOP_GRACE_S)

    def _supervise(self) -> None:
        env = settings_environment(self.settings)
        while not self._stopping.is_set():
            for i, proc in enumerate(self._procs):
                if proc is not None and proc.poll() is None:
                    continue
                if proc is not None:
                    log.error("job worker %d exited with %s; restarting it", i, proc.returncode)
                with contextlib.suppress(OSError):
                    self._procs[i] = subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "modelbay",
                            "worker",
                            "--parent",
                            str(os.getpid()),
                        ],
                        env=env,
                    )
            self._stopping.wait(RESTART_DELAY_S)
