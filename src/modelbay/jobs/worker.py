"""A job worker: claims jobs from the queue and runs each in a training process.

``modelbay worker`` runs one (``modelbay serve`` starts ``job_workers`` of them). The
worker holds the job's lease by heartbeat while the process trains; it relays a
cancellation (SIGUSR1) and kills the process if the lease is lost. The process dies with
the worker (``lifetime``), so a worker killed with ``kill -9`` leaves a job whose lease
expires and which another worker resumes from its last checkpoint.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from modelbay.registry import make_engine, migrate
from modelbay.registry.jobs import Claimed, JobStore
from modelbay.settings import Settings

log = logging.getLogger("modelbay.jobs.worker")


class Worker:
    """Claims and runs jobs one at a time until ``stop``."""

    def __init__(self, settings: Settings, name: str | None = None):
        self.settings = settings
        engine = make_engine(settings.registry_url)
        migrate(engine)
        self.jobs = JobStore(engine)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._stopping = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        self._stopping.set()

    def run_forever(self) -> None:
        log.info("job worker %s polling every %g s", self.name, self.settings.job_poll_s)
        while not self._stopping.is_set():
            if not self.run_once():
                self._stopping.wait(self.settings.job_poll_s)

    def run_once(self) -> bool:
        """Claim and run one job; False when none was waiting."""
        claimed = self.jobs.claim(self.name, self.settings.job_lease_s)
        if claimed is None:
            return False
        log.info("job %s claimed (attempt %d)", claimed.job.id, claimed.job.attempts)
        self._run(claimed)
        return True

    def _run(self, claimed: Claimed) -> None:
        job_id, token = claimed.job.id, claimed.token
        from modelbay.jobs.embedded import settings_environment

        env = settings_environment(self.settings)  # the runner reads its settings from there
        threads = str(self.settings.job_threads)
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelbay.jobs.runner",
                "--job",
                str(job_id),
                "--token",
                token,
                "--parent",
                str(os.getpid()),
            ],
            env=env,
        )
        self._child = child
        # Renewing the lease is also how a cancellation is heard: at least every second.
        beat = min(self.settings.job_lease_s / 3, 1.0)
        next_beat = time.monotonic() + beat
        asked_to_cancel = False
        while True:
            try:
                code = child.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            if self._stopping.is_set() and not asked_to_cancel:
                # Leave the job to the next worker: it resumes from the last checkpoint.
                child.kill()
                child.wait()
                self.jobs.release(job_id, token, "its worker stopped")
                return
            if time.monotonic() < next_beat:
                continue
            next_beat = time.monotonic() + beat
            state = self.jobs.heartbeat(job_id, token, self.settings.job_lease_s)
            if state == "cancel" and not asked_to_cancel:
                log.info("job %s: cancellation requested", job_id)
                child.send_signal(signal.SIGUSR1)
                asked_to_cancel = True
            elif state == "done":
                next_beat = float("inf")  # it ended the job; it is exiting
            elif state == "lost":
                log.warning("job %s: lease lost; stopping its process", job_id)
                child.kill()
                child.wait()
                return
        self._child = None
        if code != 0 and self._stopping.is_set():
            self.jobs.release(job_id, token, "its worker stopped")
        elif code != 0:
            # A process that died without ending the job (killed, out of memory).
            reason = f"signal {-code}" if code < 0 else f"exit status {code}"
            if self.jobs.fail_lost(job_id, token, f"the training process ended with {reason}"):
                log.error("job %s: training process ended with %s", job_id, reason)

    def kill_child(self) -> None:
        if self._child is not None and self._child.poll() is None:
            self._child.kill()


def main(settings: Settings) -> None:
    """Run a worker in this process until SIGTERM or SIGINT."""
    worker = Worker(settings)

    def stop(*_: object) -> None:
        worker.stop()  # the running job goes back to the queue at the next heartbeat

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.run_forever()
