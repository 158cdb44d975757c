"""The trainer's hooks in a job's process: each epoch's metrics and checkpoint into the
job's rows (under the lease token), log lines, CPU seconds metered, the tenant's daily
training time enforced, and cancellation."""

from __future__ import annotations

import resource
import shutil
import threading
from pathlib import Path
from typing import Any

from modelbay.errors import ModelbayError
from modelbay.registry.jobs import JobRecord, JobStore
from modelbay.store.base import ArtifactStore


class LeaseLost(Exception):
    """Another worker holds the job now: stop without writing anything."""


class QuotaExhausted(ModelbayError):
    status = 429


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class JobHooks:
    """The trainer's hooks: metrics, checkpoints and logs into the job's rows."""

    def __init__(
        self,
        jobs: JobStore,
        store: ArtifactStore,
        job: JobRecord,
        token: str,
        tenant_id: int,
        seconds_per_day: float | None,
    ):
        self.jobs, self.store, self.job, self.token = jobs, store, job, token
        self.tenant_id = tenant_id
        self.seconds_per_day = seconds_per_day
        self.stop = threading.Event()
        self._pending: dict[int, dict[str, Any]] = {}
        self._cpu_mark = cpu_seconds()

    def cancelled(self) -> bool:
        return self.stop.is_set()

    def on_log(self, message: str) -> None:
        if not self.jobs.log(self.job.id, self.token, message):
            raise LeaseLost

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self._pending.setdefault(epoch, {})["metrics"] = metrics
        self._write(epoch)

    def on_checkpoint(self, path: Path, epoch: int) -> None:
        # put_file consumes its file: the trainer's checkpoint stays where it is.
        staged = self.store.staging_dir() / "checkpoint.pt"
        shutil.copyfile(path, staged)
        blob = self.store.put_file(staged)
        shutil.rmtree(staged.parent, ignore_errors=True)
        self._pending.setdefault(epoch, {})["digest"] = blob.digest
        self._write(epoch)

    def take_cpu(self) -> float:
        """CPU seconds used since the last call, metered to the job's key."""
        from modelbay.security.usage import add_training_seconds

        now = cpu_seconds()
        used, self._cpu_mark = now - self._cpu_mark, now
        if self.job.created_by:
            add_training_seconds(self.jobs.sessions, self.job.created_by, self.tenant_id, used)
        return used

    def _write(self, epoch: int) -> None:
        entry = self._pending[epoch]
        if "metrics" not in entry or "digest" not in entry:
            return  # the other half (metrics or checkpoint) of this epoch comes next
        del self._pending[epoch]
        held, stale = self.jobs.epoch(
            self.job.id, self.token, epoch, entry["metrics"], entry["digest"], self.take_cpu()
        )
        if not held:
            raise LeaseLost
        for digest in stale:
            self.store.delete(digest)
        self._check_quota()

    def _check_quota(self) -> None:
        if self.seconds_per_day is None:
            return
        from modelbay.security.usage import training_seconds_today

        used = training_seconds_today(self.jobs.sessions, self.tenant_id)
        if used >= self.seconds_per_day:
            raise QuotaExhausted(
                f"the tenant's training time today ({used:.0f} CPU seconds) reached its limit "
                f"(training_seconds_per_day {self.seconds_per_day:g}); the job stopped after "
                "its last checkpoint"
            )
