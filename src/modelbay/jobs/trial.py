"""A search's trial, in its job's process: each epoch's validation metric goes to its Optuna
trial, the study's pruner may stop it, and its exported model is kept for its search
(which registers the best trial's) instead of being registered.

A trial job has ``parent`` set (its search) and ``result["trial"]``, its number in the
study. It ends ``succeeded`` either way: ``result["pruned"]`` says whether the pruner
stopped it (and ``pruned_at_epoch`` when); ``result["value"]`` is the metric it scored.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from modelbay.jobs.hooks import JobHooks
from modelbay.registry.jobs import JobRecord, JobStore
from modelbay.registry.locks import RegistryLock
from modelbay.registry.repository import unreferenced
from modelbay.settings import Settings
from modelbay.store.base import ArtifactStore
from modelbay.training.search_space import SearchSpec

if TYPE_CHECKING:
    from optuna.trial import Trial

    from modelbay.jobs.runner import JobContext


class TrialPruned(Exception):
    """The study's pruner stopped the trial after ``epoch``."""

    def __init__(self, epoch: int):
        super().__init__(f"pruned after epoch {epoch}")
        self.epoch = epoch


class TrialHooks(JobHooks):
    """``JobHooks`` that also report each epoch's validation metric to the Optuna trial and
    stop training (``TrialPruned``, once the epoch is recorded) when the pruner says so."""

    def __init__(
        self,
        jobs: JobStore,
        store: ArtifactStore,
        job: JobRecord,
        token: str,
        tenant_id: int,
        seconds_per_day: float | None,
        settings: Settings,
    ):
        super().__init__(jobs, store, job, token, tenant_id, seconds_per_day)
        assert job.parent is not None
        self.search = SearchSpec.model_validate(jobs.get(job.parent).spec)
        self._settings = settings
        self._trial: Trial | None = None
        self._trial_id = 0
        self._pruned_at: int | None = None

    @property
    def trial(self) -> Trial:
        """The job's Optuna trial (the study is loaded on first use)."""
        if self._trial is None:
            self._trial, self._trial_id = optuna_trial(self._settings, self.job, self.search)
        return self._trial

    def reported(self) -> dict[int, float]:
        """The metric of each epoch reported so far, by this process or an earlier one
        (a trial resumed from its checkpoint)."""
        frozen = self.trial.storage.get_trial(self._trial_id)
        return dict(frozen.intermediate_values)

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        super().on_epoch(epoch, metrics)
        value = metrics.get(self.search.metric)
        if value is None:
            return
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            self._pruned_at = epoch

    def on_checkpoint(self, path: Path, epoch: int) -> None:
        super().on_checkpoint(path, epoch)
        if self._pruned_at == epoch:
            self.on_log(f"pruned after epoch {epoch}: {self.search.metric} behind the others")
            raise TrialPruned(epoch)


def optuna_trial(settings: Settings, job: JobRecord, search: SearchSpec) -> tuple[Trial, int]:
    """Job ``job``'s trial in its search's study, with the search's pruner, and its id."""
    import optuna

    from modelbay.jobs.study import make_pruner, open_storage, study_name

    storage = open_storage(settings)
    assert job.parent is not None
    name = study_name(job.parent)
    study = optuna.load_study(
        study_name=name,
        storage=storage,
        sampler=optuna.samplers.RandomSampler(),  # a trial draws nothing
        pruner=make_pruner(search.pruner),
    )
    study_id = storage.get_study_id_from_name(name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, job.result["trial"])
    return optuna.trial.Trial(study, trial_id), trial_id


def finish_trial(ctx: JobContext, result: Any, metrics: dict[str, Any]) -> int:
    """End a trial that trained every epoch: its model kept as a blob for the search."""
    assert isinstance(ctx.hooks, TrialHooks)
    hooks, job = ctx.hooks, ctx.job
    # With early stopping the model is the best epoch's; else the last epoch's.
    scored = int(metrics["best_epoch" if job.spec.get("early_stopping") else "epochs"])
    value = hooks.reported().get(scored)
    staged = ctx.store.staging_dir() / result.entrypoint
    shutil.copyfile(Path(result.model_dir) / result.entrypoint, staged)
    blob = ctx.store.put_file(staged)
    shutil.rmtree(staged.parent, ignore_errors=True)
    outcome = {
        "trial": job.result["trial"],
        "pruned": False,
        "value": value,
        "scored_epoch": scored,
        "model_digest": blob.digest,
        "entrypoint": result.entrypoint,
        "task": result.task,
        "classes": result.classes,
        "test_indices": result.test_indices,
        "test_predictions": result.test_predictions,
        "signature": result.signature.model_dump(),
    }
    _, stale = ctx.jobs.finish(
        job.id,
        ctx.token,
        "succeeded",
        metrics=metrics,
        result=outcome,
        cpu_seconds=hooks.take_cpu(),
        keep=blob.digest,
    )
    drop_blobs(ctx.engine, ctx.store, stale)  # the search ended meanwhile: not kept
    return 0


def finish_pruned(ctx: JobContext, pruned: TrialPruned) -> int:
    """End a trial its pruner stopped; its value is its best epoch's so far."""
    assert isinstance(ctx.hooks, TrialHooks)
    values = ctx.hooks.reported()
    outcome = {
        "trial": ctx.job.result["trial"],
        "pruned": True,
        "pruned_at_epoch": pruned.epoch,
        "value": max(values.values()) if values else None,
    }
    _, stale = ctx.jobs.finish(
        ctx.job.id, ctx.token, "succeeded", result=outcome, cpu_seconds=ctx.hooks.take_cpu()
    )
    drop_blobs(ctx.engine, ctx.store, stale)
    return 0


def drop_blobs(engine: Engine, store: ArtifactStore, digests: Iterable[str]) -> None:
    """Delete the blobs among ``digests`` that no row uses, checked again under the
    registry's lock: a push in another process may have just reused one (a model, trained
    twice alike, is the same bytes)."""
    digests = set(digests)
    if not digests:
        return
    with RegistryLock(engine).held(), Session(engine) as s:
        for digest in unreferenced(s, digests):
            store.delete(digest)


def release_trials(
    engine: Engine, jobs: JobStore, store: ArtifactStore, search_id: int, keep_job: int | None
) -> None:
    """Delete the models the finished trials of ``search_id`` kept (but ``keep_job``'s)."""
    with RegistryLock(engine).held():
        for digest in jobs.release_kept(search_id, keep_job=keep_job):
            store.delete(digest)
