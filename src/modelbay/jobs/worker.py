"""A job worker: claims jobs from the queue and runs each in a process of its own.

``modelbay worker`` runs one (``modelbay serve`` starts ``job_workers`` of them). A worker
trains one job at a time; besides it, it runs up to ``job_coordinators`` coordinating jobs
(a hyperparameter search, which queues its trials as jobs of their own, and a federated
job, which waits for its clients), which compute little and must not hold the training
slot that their own trials need. The worker holds each job's lease by heartbeat while its
process runs; it relays a cancellation (SIGUSR1) and kills the process if the lease is
lost. The process dies with the worker (``lifetime``), so a worker killed with ``kill -9``
leaves a job whose lease expires and which another worker resumes from its last
checkpoint.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from modelbay.registry import make_engine, migrate
from modelbay.registry.jobs import COORDINATORS, TRAINING, Claimed, JobStore
from modelbay.settings import Settings
from modelbay.store.base import ArtifactStore

log = logging.getLogger("modelbay.jobs.worker")


class Worker:
    """Claims and runs jobs until ``stop``: one training job at a time, and up to
    ``job_coordinators`` coordinating jobs beside it."""

    def __init__(self, settings: Settings, name: str | None = None):
        self.settings = settings
        engine = make_engine(settings.registry_url)
        migrate(engine)
        self.jobs = JobStore(engine)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._stopping = threading.Event()
        self._slot_freed = threading.Event()
        self._lock = threading.Lock()
        self._running: dict[int, tuple[str, threading.Thread]] = {}  # job id: (kind, thread)
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def stop(self) -> None:
        self._stopping.set()
        self._slot_freed.set()

    def run_forever(self) -> None:
        log.info("job worker %s polling every %g s", self.name, self.settings.job_poll_s)
        while not self._stopping.is_set():
            if not self.run_once():
                # Until the next poll, or at once when one of this worker's jobs ends.
                self._slot_freed.wait(self.settings.job_poll_s)
                self._slot_freed.clear()
        for _, thread in list(self._running.values()):
            thread.join()  # each gives its job back to the queue

    def run_once(self) -> bool:
        """Claim a job for a free slot and start it; False when no slot is free or no job
        was waiting."""
        kinds = self._claimable()
        if not kinds:
            return False
        claimed = self.jobs.claim(self.name, self.settings.job_lease_s, kinds=kinds)
        if claimed is None:
            return False
        log.info(
            "job %s (%s) claimed (attempt %d)",
            claimed.job.id,
            claimed.job.kind,
            claimed.job.attempts,
        )
        thread = threading.Thread(
            target=self._supervise, args=(claimed,), name=f"job-{claimed.job.id}", daemon=True
        )
        with self._lock:
            self._running[claimed.job.id] = (claimed.job.kind, thread)
        thread.start()
        return True

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no job runs here (tests, scripts); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._running:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _claimable(self) -> tuple[str, ...]:
        """The job kinds this worker has a free slot for."""
        with self._lock:
            kinds = [kind for kind, _ in self._running.values()]
        coordinating = sum(kind in COORDINATORS for kind in kinds)
        free: tuple[str, ...] = ()
        if coordinating == len(kinds):  # no training job runs
            free += TRAINING
        if coordinating < self.settings.job_coordinators:
            free += COORDINATORS
        return free

    def _supervise(self, claimed: Claimed) -> None:
        try:
            self._run(claimed)
        except Exception:  # the lease expires and another worker resumes the job
            log.exception("job %s: supervising its process failed", claimed.job.id)
        finally:
            with self._lock:
                self._running.pop(claimed.job.id, None)
                self._children.pop(claimed.job.id, None)
            self._slot_freed.set()

    def _run(self, claimed: Claimed) -> None:
        job_id, token = claimed.job.id, claimed.token
        from modelbay.jobs.embedded import settings_environment

        env = settings_environment(self.settings)  # the runner reads its settings from there
        threads = str(self.settings.job_threads)
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        # The process starts with SIGUSR1 (cancel) blocked, so a cancellation that comes
        # before it has its handler waits for it instead of killing it (this thread, which
        # only supervises, blocks it too).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        # The job's working directory (its data, checkpoints, export) is the worker's to
        # remove: a process killed mid-job cannot.
        work = self._store().staging_dir()
        try:
            self._follow(job_id, token, work, env)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _follow(self, job_id: int, token: str, work: Path, env: dict[str, str]) -> None:
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
                "--work",
                str(work),
            ],
            env=env,
        )
        with self._lock:
            self._children[job_id] = child
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
        if code != 0 and self._stopping.is_set():
            self.jobs.release(job_id, token, "its worker stopped")
        elif code != 0:
            # A process that died without ending the job (killed, out of memory).
            reason = f"signal {-code}" if code < 0 else f"exit status {code}"
            error = f"the training process ended with {reason}"
            held, unused = self.jobs.fail_lost(job_id, token, error)
            if held:
                log.error("job %s: training process ended with %s", job_id, reason)
            self._drop(unused)

    def _drop(self, digests: set[str]) -> None:
        """Delete blobs a failed job no longer references (checked again under the
        registry's lock: a push elsewhere may have just reused one)."""
        if not digests:
            return
        from modelbay.jobs.trial import drop_blobs

        try:
            drop_blobs(self.jobs.engine, self._store(), digests)
        except Exception:  # the job is ended; an unused blob left behind is only space
            log.exception("could not delete blobs a failed job left unused")

    def _store(self) -> ArtifactStore:
        from modelbay.store import keyring_from_settings, make_store

        return make_store(self.settings.blob_dir, keyring_from_settings(self.settings))

    def kill_children(self) -> None:
        with self._lock:
            children = list(self._children.values())
        for child in children:
            if child.poll() is None:
                child.kill()


def main(settings: Settings) -> None:
    """Run a worker in this process until SIGTERM or SIGINT."""
    worker = Worker(settings)

    def stop(*_: object) -> None:
        worker.stop()  # the running job goes back to the queue at the next heartbeat

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.run_forever()
