"""A hyperparameter search job: the coordinator of its trials, run by ``runner`` in the
search's process (beside a worker's training job, as it computes little).

It creates, or after a restart loads, the search's Optuna study in the registry database,
asks it for trials (ask/tell), and queues each as a training job of its own (kind ``train``,
``parent`` the search) with the drawn parameters resolved by ``resolve_spec``. It keeps up to
``parallel`` trials queued or running, so workers run them side by side; a trial reports
each epoch to the study and its pruner may stop it (``trial.py``). When a trial ends, the
study is told its value, its pruning or its failure. At the end the best trial's exported
model (kept by the trial as a blob) is returned for ``runner`` to register once, with the
trials and the parameters' importances in the search's result.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelbay.errors import InvalidRequest, ModelbayError, NotFound, Overloaded
from modelbay.jobs.hooks import LeaseLost
from modelbay.jobs.study import load_study, make_sampler
from modelbay.jobs.submit import check_training_time
from modelbay.jobs.trial import release_trials
from modelbay.registry.datasets import DatasetStore
from modelbay.registry.jobs import ACTIVE, JobRecord
from modelbay.tensors import Signature
from modelbay.training.search_space import SearchSpec, base_specs, sample
from modelbay.training.spec import resolve_spec
from modelbay.training.table import DatasetSchema

if TYPE_CHECKING:
    from optuna import Study
    from optuna.trial import FrozenTrial

    from modelbay.jobs.runner import JobContext
    from modelbay.training.evaluation import TrainResult

log = logging.getLogger("modelbay.jobs.search")

POLL_S = 0.25
STOP_WAIT_S = 60.0
"""How long a cancelled search waits for its running trials to stop."""
MIN_TRIALS_FOR_IMPORTANCE = 3


def run_search(ctx: JobContext) -> TrainResult:
    """Run the search of ``ctx.job`` to its end; the best trial's model."""
    search = SearchSpec.model_validate(ctx.job.spec)
    schema = _schema(ctx)
    bases = base_specs(search.families, search.target, search.params, schema)
    study = load_study(ctx.settings, ctx.job.id, sampler=make_sampler(search))
    coordinator = SearchCoordinator(ctx, search, schema, bases, study)
    try:
        coordinator.run()
    except LeaseLost:
        raise  # the worker holding the search now goes on with its trials
    except BaseException:
        coordinator.stop_trials()
        raise
    return coordinator.best_result()


def _schema(ctx: JobContext) -> DatasetSchema:
    job = ctx.job
    try:
        version = DatasetStore(ctx.engine).version(job.dataset, job.dataset_version)
    except NotFound:
        version = None
    if version is None or version.digest != job.dataset_digest:
        raise ModelbayError(
            f"dataset '{job.dataset}' version {job.dataset_version} was deleted", status=422
        )
    schema: DatasetSchema = version.schema_  # type: ignore[assignment]
    return schema


class SearchCoordinator:
    """Asks the study for trials, queues them as jobs, and tells it how each ended."""

    def __init__(
        self,
        ctx: JobContext,
        search: SearchSpec,
        schema: DatasetSchema,
        bases: dict[str, dict[str, Any]],
        study: Study,
    ):
        self.ctx, self.search, self.schema, self.bases, self.study = (
            ctx,
            search,
            schema,
            bases,
            study,
        )
        self.parallel = search.parallel or max(1, ctx.settings.job_workers)
        self.out_of_time = False

    def run(self) -> None:
        from modelbay.training.trainer import Cancelled

        self._start()
        while True:
            if self.ctx.hooks.cancelled():
                raise Cancelled("the search was cancelled")
            children = self._children()
            self._tell_finished(children)
            trials = self.study.get_trials(deepcopy=False)
            running = sum(t.state.name == "RUNNING" for t in trials)
            asked = len(trials)
            while running < self.parallel and asked < self.search.trials and not self.out_of_time:
                running += self._ask()
                asked += 1
            if running == 0:
                return
            self.ctx.hooks.stop.wait(POLL_S)

    def _start(self) -> None:
        """A new study gets the baseline trial first; a loaded one gets every trial that was
        asked but never queued (the coordinator stopped in between) queued now."""
        trials = self.study.get_trials(deepcopy=False)
        if not trials:
            self._log(
                f"searching {self.search.trials} trials of {', '.join(self.search.families)}, "
                f"{self.parallel} at a time, maximising {self.search.metric}"
            )
            if self.search.baseline is not None:
                self.study.enqueue_trial(self.search.baseline)
            return
        self._log(f"resuming the study: {len(trials)} trials asked so far")
        queued = self._children()
        for trial in trials:
            if trial.state.name == "RUNNING" and trial.number not in queued:
                self._queue(trial.number, trial.params)

    def _ask(self) -> int:
        """Ask for a trial and queue it; 1 if it runs, 0 if it was refused or not queued."""
        try:
            check_training_time(self.ctx.jobs, self.ctx.hooks.tenant_id)
        except Overloaded as exc:
            self._log(f"no more trials: {exc.message}")
            self.out_of_time = True
            return 0
        trial = self.study.ask()
        family, drawn = sample(trial, self.search, self.bases)
        if len(self.search.families) > 1:
            drawn = {"family": family, **drawn}
        return self._queue(trial.number, drawn)

    def _queue(self, number: int, drawn: dict[str, Any]) -> int:
        """Queue trial ``number``, with the ``drawn`` hyperparameters (its Optuna params),
        as a training job; a combination that ``resolve_spec`` refuses fails the trial."""
        from optuna.trial import TrialState

        drawn = dict(drawn)
        family = str(drawn.pop("family", self.search.family))
        params = {**self.search.params, **drawn}
        job = self.ctx.job
        try:
            spec = resolve_spec(family, self.search.target, params, self.schema)
        except InvalidRequest as exc:
            self.study.tell(number, state=TrialState.FAIL)
            self._log(f"trial {number} not run: {exc.message}", trial=number)
            return 0
        child = self.ctx.jobs.submit(
            tenant_id=self.ctx.hooks.tenant_id,
            spec=spec.model_dump(mode="json"),
            dataset=job.dataset,
            dataset_version=job.dataset_version,
            dataset_digest=job.dataset_digest,
            model_name=job.model,
            deploy=False,
            created_by=job.created_by,
            kind="train",
            parent_id=job.id,
            result={"trial": number},
        )
        shown = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in drawn.items()
        )
        self._log(f"trial {number} queued as job {child.id}: {shown}", trial=number)
        return 1

    def _children(self) -> dict[int, JobRecord]:
        """The search's trial jobs by trial number."""
        jobs = self.ctx.jobs.list_jobs(parent=self.ctx.job.id, limit=10 * self.search.trials)
        return {int(j.result["trial"]): j for j in jobs if "trial" in j.result}

    def _tell_finished(self, children: dict[int, JobRecord]) -> None:
        from optuna.trial import TrialState

        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            child = children.get(trial.number)
            if child is None or child.state in ACTIVE:
                continue
            value = child.result.get("value")
            if child.state == "succeeded" and child.result.get("pruned"):
                self.study.tell(trial.number, state=TrialState.PRUNED)
                line = f"pruned after epoch {child.result.get('pruned_at_epoch')}"
            elif child.state == "succeeded" and value is not None and math.isfinite(value):
                self.study.tell(trial.number, value)
                line = f"{self.search.metric} {value:.4f}"
            else:
                self.study.tell(trial.number, state=TrialState.FAIL)
                line = f"{child.state}: {child.error or 'no validation metric'}"
            self._record(trial.number, child, line)

    def _record(self, number: int, child: JobRecord, line: str) -> None:
        """The search's progress: a log line per trial and the counts as metrics."""
        counts = {state: 0 for state in ("COMPLETE", "PRUNED", "FAIL")}
        for t in self.study.get_trials(deepcopy=False):
            if t.state.name in counts:
                counts[t.state.name] += 1
        metrics: dict[str, float] = {
            "trials_complete": counts["COMPLETE"],
            "trials_pruned": counts["PRUNED"],
            "trials_failed": counts["FAIL"],
        }
        best = ""
        if counts["COMPLETE"]:
            top = self.study.best_trial
            metrics["best_value"] = float(top.value or 0.0)
            metrics["best_trial"] = top.number
            best = f" (best: trial {top.number}, {top.value:.4f})"
        self._log(f"trial {number} (job {child.id}) {line}{best}", trial=number)
        done = sum(counts.values())
        held, _ = self.ctx.jobs.epoch(
            self.ctx.job.id, self.ctx.token, done, metrics, None, self.ctx.hooks.take_cpu()
        )
        if not held:
            raise LeaseLost

    def _log(self, message: str, **data: Any) -> None:
        if not self.ctx.jobs.log(self.ctx.job.id, self.ctx.token, message, **data):
            raise LeaseLost

    def stop_trials(self) -> None:
        """Cancel the trials still queued or running, wait for them to stop, fail them in
        the study, and delete the models the finished ones kept."""
        from optuna.trial import TrialState

        jobs = self.ctx.jobs
        for child in self._children().values():
            if child.state in ACTIVE:
                jobs.cancel(child.id)
        deadline = time.monotonic() + STOP_WAIT_S
        while time.monotonic() < deadline:
            if not any(c.state in ACTIVE for c in self._children().values()):
                break
            time.sleep(POLL_S)
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            self.study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        release_trials(self.ctx.engine, jobs, self.ctx.store, self.ctx.job.id, None)

    def best_result(self) -> TrainResult:
        """The best trial's model and test results, its spec and the search's summary for
        ``runner`` (which registers it); the other trials' models deleted."""
        from optuna.trial import TrialState

        from modelbay.training.evaluation import TrainResult

        complete = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            raise ModelbayError(
                f"no trial of the search completed ({len(self.study.trials)} pruned or "
                "failed); see the trials' errors with `modelbay jobs list`",
                status=422,
            )
        best = self.study.best_trial
        children = self._children()
        child = children[best.number]
        outcome = child.result
        model_dir = self.ctx.work / "best"
        model_dir.mkdir(parents=True, exist_ok=True)
        self.ctx.store.copy_to(outcome["model_digest"], model_dir / outcome["entrypoint"])
        self.ctx.outcome["search"] = self._summary(best, children)
        self.ctx.lineage.update(
            spec=child.spec,
            search={"job": self.ctx.job.id, "trial": best.number, "trial_job": child.id},
        )
        release_trials(self.ctx.engine, self.ctx.jobs, self.ctx.store, self.ctx.job.id, child.id)
        metrics = {k: v for k, v in child.metrics.items() if k.startswith("test_")}
        metrics.update(epochs=child.metrics.get("epochs", 0.0))
        metrics[self.search.metric] = float(best.value or 0.0)
        return TrainResult(
            model_dir=Path(model_dir),
            format="onnx",
            entrypoint=outcome["entrypoint"],
            signature=Signature.model_validate(outcome["signature"]),
            task=outcome["task"],
            classes=outcome["classes"],
            metrics=metrics,
            test_indices=outcome["test_indices"],
            test_predictions=outcome["test_predictions"],
        )

    def _summary(self, best: FrozenTrial, children: dict[int, JobRecord]) -> dict[str, Any]:
        """What ``jobs show`` prints: every trial, the best, the parameters' importances."""
        trials = []
        for t in self.study.get_trials(deepcopy=False):
            child = children.get(t.number)
            trials.append(
                {
                    "trial": t.number,
                    "job": child.id if child else None,
                    "state": t.state.name.lower(),
                    "value": t.value,
                    "params": t.params,
                    "pruned_at_epoch": child.result.get("pruned_at_epoch") if child else None,
                }
            )
        return {
            "metric": self.search.metric,
            "best": {"trial": best.number, "value": best.value, "params": best.params},
            "trials": trials,
            "pruned": sum(t["state"] == "pruned" for t in trials),
            "importances": self._importances(),
        }

    def _importances(self) -> dict[str, float]:
        """fANOVA-style importances (Optuna's PED-ANOVA) of the parameters over the complete
        trials; empty with fewer than ``MIN_TRIALS_FOR_IMPORTANCE`` of them."""
        import optuna
        from optuna.trial import TrialState

        complete = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
            return {}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "some regimes have less than 2 trials"
                found = optuna.importance.get_param_importances(self.study)
        except (ValueError, RuntimeError) as exc:  # a nicety: the search succeeded anyway
            log.warning("search %s: no parameter importances: %s", self.ctx.job.id, exc)
            return {}
        return {name: float(value) for name, value in found.items()}
