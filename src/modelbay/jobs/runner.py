"""One training job, in a process of its own: ``python -m modelbay.jobs.runner``.

Started by a worker holding the job's lease (``worker.py``), with the server's settings in
the environment. It reads the dataset and the last checkpoint from the artifact store,
trains (``modelbay.training.trainer``), stores a checkpoint and the epoch's metrics every
epoch, and on success registers the exported model as a version with its lineage (and
deploys it if asked). SIGUSR1 asks it to stop at the next batch (cancellation). It dies
with its worker; every write names the lease token, so a runner whose worker lost the
lease changes nothing.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

from modelbay.errors import ModelbayError, NotFound
from modelbay.jobs.hooks import JobHooks, LeaseLost
from modelbay.jobs.lifetime import die_with_parent
from modelbay.registry import DeploymentConfig, DeploymentStore, Registry, make_engine
from modelbay.registry.datasets import DatasetStore
from modelbay.registry.jobs import JobRecord, JobStore
from modelbay.settings import Settings
from modelbay.store import keyring_from_settings, make_store
from modelbay.store.base import ArtifactStore

log = logging.getLogger("modelbay.jobs.runner")


@dataclass
class JobContext:
    """What a job's process works with: a coordinating job kind (``search``,
    ``federated``) gets it and returns the ``TrainResult`` this module registers."""

    settings: Settings
    engine: Any
    jobs: JobStore
    store: ArtifactStore
    job: JobRecord
    token: str
    hooks: JobHooks
    work: Path  # a private directory, removed when the job's process ends
    outcome: dict[str, Any] = field(default_factory=dict)
    """What a coordinating job adds to its result (a search: its trials)."""
    lineage: dict[str, Any] = field(default_factory=dict)
    """What it adds to, or changes in, the registered version's ``source``."""


def run(job_id: int, token: str, work: Path | None = None) -> int:
    """Run job ``job_id`` under lease ``token`` in ``work`` (a staging directory of the
    store; its worker removes it, also when this process is killed)."""
    settings = Settings()
    engine = make_engine(settings.registry_url)
    jobs = JobStore(engine)
    store = make_store(settings.blob_dir, keyring_from_settings(settings))
    job = jobs.get(job_id)
    tenant_id, per_day = _tenant_limits(engine, job)
    if job.parent is not None:  # a search's trial
        from modelbay.jobs.trial import TrialHooks

        hooks: JobHooks = TrialHooks(jobs, store, job, token, tenant_id, per_day, settings)
    else:
        hooks = JobHooks(jobs, store, job, token, tenant_id, per_day)
    signal.signal(signal.SIGUSR1, lambda *_: hooks.stop.set())
    signal.signal(signal.SIGTERM, lambda *_: hooks.stop.set())
    # Ctrl-C of `modelbay serve` reaches the whole process group: the worker decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Its worker starts it with SIGUSR1 blocked: a cancellation sent meanwhile arrives now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
    work = work or store.staging_dir()
    try:
        ctx = JobContext(settings, engine, jobs, store, job, token, hooks, work)
        return _train_and_register(ctx)
    except LeaseLost:
        log.warning("job %s: lease lost; another worker has it", job_id)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _train_and_register(ctx: JobContext) -> int:
    from modelbay.jobs.trial import TrialPruned, finish_pruned, finish_trial
    from modelbay.training.trainer import Cancelled

    settings, engine, jobs, store = ctx.settings, ctx.engine, ctx.jobs, ctx.store
    job, token, hooks = ctx.job, ctx.token, ctx.hooks
    registry = Registry(engine)
    done = _registered_by(registry, job)
    if done is not None:  # registered, then the worker died before it could say so
        return _succeed(jobs, store, job, token, hooks, done, {}, {})
    try:
        result = _produce(ctx)
    except TrialPruned as pruned:
        return finish_pruned(ctx, pruned)
    except Cancelled:
        _finish(jobs, store, job, token, "cancelled", hooks, error=None)
        return 0
    except LeaseLost:
        raise
    except ModelbayError as exc:
        _finish(jobs, store, job, token, "failed", hooks, error=exc.message)
        return 0
    except Exception as exc:
        log.exception("job %s failed", job.id)
        _finish(jobs, store, job, token, "failed", hooks, error=f"training failed: {exc}")
        return 0
    metrics = dict(result.metrics)
    for name in ("accuracy", "r2"):  # the test split's score, under its plain name too
        if f"test_{name}" in metrics:
            metrics[name] = metrics[f"test_{name}"]
    if job.parent is not None:  # a search's trial: the search registers the best one
        return finish_trial(ctx, result, metrics)
    try:
        version = _register(
            settings, registry, store, job, hooks.tenant_id, result, metrics, ctx.lineage
        )
        if job.deploy:
            _deploy(engine, settings, job.model, version)
    except ModelbayError as exc:
        _finish(jobs, store, job, token, "failed", hooks, error=exc.message)
        return 0
    outcome = {
        "task": result.task,
        "classes": result.classes,
        "test_indices": result.test_indices,
        "test_predictions": result.test_predictions,
        "signature": result.signature.model_dump(),
        **ctx.outcome,
    }
    return _succeed(jobs, store, job, token, hooks, version, metrics, outcome)


def _produce(ctx: JobContext) -> Any:
    """The job's ``TrainResult``, by its kind."""
    if ctx.job.kind == "search":
        from modelbay.jobs.search import run_search

        return run_search(ctx)
    if ctx.job.kind == "federated":
        from modelbay.jobs.federated import run_federated

        return run_federated(ctx)
    return _train(ctx.settings, ctx.engine, ctx.store, ctx.job, ctx.hooks, ctx.work)


def load_job_table(engine: Any, store: ArtifactStore, job: JobRecord, work: Path) -> Any:
    """The job's dataset version as a ``Table`` (the columns its spec names); a 422
    ``ModelbayError`` if the version was deleted (or pushed anew under its name)."""
    from modelbay.training.datasets import load_table
    from modelbay.training.spec import TrainSpec
    from modelbay.training.table import DatasetSchema

    try:
        dataset = DatasetStore(engine).version(job.dataset, job.dataset_version)
    except NotFound:
        dataset = None
    if dataset is None or dataset.digest != job.dataset_digest:  # deleted (and pushed anew)
        raise ModelbayError(
            f"dataset '{job.dataset}' version {job.dataset_version} was deleted", status=422
        )
    data = work / ("data-" + Path(dataset.filename).name)
    store.copy_to(job.dataset_digest, data)
    spec = TrainSpec.model_validate(job.spec)
    return load_table(
        data,
        dataset.format,
        cast(DatasetSchema, dataset.schema_),
        spec.target,
        spec.task,
        spec.features or None,
    )


def _train(
    settings: Settings,
    engine: Any,
    store: ArtifactStore,
    job: JobRecord,
    hooks: JobHooks,
    work: Path,
) -> Any:
    from modelbay.training.spec import PARALLEL, TrainSpec
    from modelbay.training.trainer import train

    spec = TrainSpec.model_validate(job.spec)
    table = load_job_table(engine, store, job, work)
    resume = None
    digest, epoch = _checkpoint(engine, job.id)
    if digest is not None:
        resume = work / "resume.pt"
        store.copy_to(digest, resume)
        hooks.on_log(f"resuming from the checkpoint of epoch {epoch}")
    threads = settings.job_threads
    how = f"{threads} thread{'s' if threads > 1 else ''}"
    if spec.strategy in PARALLEL:
        how = f"{spec.strategy}, {spec.workers} processes of {how}"
    hooks.on_log(f"training {spec.family} on {table.rows} rows of '{job.dataset}' ({how})")
    if spec.strategy in PARALLEL:
        from modelbay.training.distributed import train_parallel

        return train_parallel(table, spec, work / "train", hooks, resume=resume, threads=threads)
    if spec.strategy == "federated":  # simulated: the clients are this process's
        from modelbay.training.federated import simulate

        return simulate(table, spec, work / "train", hooks, resume=resume, threads=threads)
    return train(table, spec, work / "train", hooks, resume=resume, threads=threads)


def _checkpoint(engine: Any, job_id: int) -> tuple[str | None, int]:
    """The job's last checkpoint (digest, epoch), as the database has it now."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from modelbay.registry.tables import JobRow

    with Session(engine) as s:
        row = s.execute(
            select(JobRow.checkpoint_digest, JobRow.checkpoint_epoch).where(JobRow.id == job_id)
        ).one()
        return row[0], int(row[1])


def _register(
    settings: Settings,
    registry: Registry,
    store: ArtifactStore,
    job: JobRecord,
    tenant_id: int,
    result: Any,
    metrics: dict[str, Any],
    extra_lineage: dict[str, Any],
) -> int:
    import modelbay
    from modelbay.catalog import Catalog, PushRequest
    from modelbay.serving.validator import validate_here

    catalog = Catalog(
        registry,
        store,
        max_upload_bytes=settings.max_upload_bytes,
        threads=1,
        validator=validate_here,
    )
    files = sorted(p for p in Path(result.model_dir).rglob("*") if p.is_file())
    lineage = {
        "job": job.id,
        "dataset": job.dataset,
        "dataset_version": job.dataset_version,
        "dataset_digest": job.dataset_digest,
        "spec": job.spec,
        "code_version": modelbay.__version__,
        **extra_lineage,
    }
    with ExitStack() as stack:
        streams: list[tuple[str, BinaryIO]] = [
            (p.relative_to(result.model_dir).as_posix(), stack.enter_context(open(p, "rb")))
            for p in files
        ]
        record = catalog.push(
            job.model,
            PushRequest(
                files=streams,
                format=result.format,
                entrypoint=result.entrypoint,
                signature=result.signature,
                description=f"trained by job {job.id}: {lineage['spec'].get('family')} on "
                f"'{job.dataset}' version {job.dataset_version}",
                metrics=metrics,
                source=lineage,
                created_by=job.created_by,
                tenant_id=tenant_id,
                own=True,
            ),
        )
    changes: dict[str, Any] = {"task": result.task}
    if result.classes:
        changes["labels"] = list(result.classes)
    registry.update_model(job.model, **changes)
    _bump(settings, "MODELS")
    return record.version


def _deploy(engine: Any, settings: Settings, model: str, version: int) -> None:
    deployments = DeploymentStore(engine)
    try:
        deployments.get(model)
    except NotFound:
        deployments.create(model, str(version), DeploymentConfig())
    else:
        deployments.update(model, target=str(version))
    _bump(settings, "DEPLOYMENTS")


def _bump(settings: Settings, domain: str) -> None:
    """Tell the frontends of this data directory at once (others reconcile on a timer)."""
    from modelbay.frontends.epochs import Domain, SharedEpochs
    from modelbay.frontends.run import RunDir

    try:
        epochs = SharedEpochs(RunDir(settings.data_dir).epochs_file)
        epochs.bump(Domain[domain])
        epochs.close()
    except OSError:
        pass


def _registered_by(registry: Registry, job: JobRecord) -> int | None:
    """The version a previous attempt of ``job`` registered, if any."""
    try:
        versions = registry.list_versions(job.model)
    except NotFound:
        return None
    for v in versions:
        if v.source.get("job") == job.id and v.source.get("dataset_digest") == job.dataset_digest:
            return v.version
    return None


def _succeed(
    jobs: JobStore,
    store: ArtifactStore,
    job: JobRecord,
    token: str,
    hooks: JobHooks,
    version: int,
    metrics: dict[str, Any],
    outcome: dict[str, Any],
) -> int:
    held, stale = jobs.finish(
        job.id,
        token,
        "succeeded",
        metrics=metrics,
        result=outcome or None,
        model_version=version,
        cpu_seconds=hooks.take_cpu(),
    )
    for digest in stale:
        store.delete(digest)
    if held:  # else the worker holding the job now ends (and audits) it
        _audit(job, "jobs.succeeded", {"model": job.model, "version": version})
    return 0


def _finish(
    jobs: JobStore,
    store: ArtifactStore,
    job: JobRecord,
    token: str,
    state: Any,
    hooks: JobHooks,
    *,
    error: str | None,
) -> None:
    held, stale = jobs.finish(job.id, token, state, error=error, cpu_seconds=hooks.take_cpu())
    for digest in stale:
        store.delete(digest)
    if held:
        _audit(job, f"jobs.{state}", {"error": error} if error else {})


def _audit(job: JobRecord, action: str, details: dict[str, Any]) -> None:
    from modelbay.security.audit import AuditLog

    settings = Settings()
    try:
        AuditLog(make_engine(settings.registry_url), *settings.audit_files).append(
            actor=job.created_by or "worker",
            action=action,
            target={"job": job.id, "tenant": job.tenant},
            # as a request's would read: done, given up by its client, or failed
            result={"jobs.succeeded": 200, "jobs.cancelled": 499}.get(action, 500),
            details=details,
        )
    except Exception:  # the job's outcome is recorded; a failed audit write is logged
        log.exception("could not audit %s of job %s", action, job.id)


def _tenant_limits(engine: Any, job: JobRecord) -> tuple[int, float | None]:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from modelbay.registry.tables import JobRow, TenantRow

    with Session(engine) as s:
        row = s.execute(
            select(JobRow.tenant_id, TenantRow.training_seconds_per_day)
            .join(TenantRow, TenantRow.id == JobRow.tenant_id)
            .where(JobRow.id == job.id)
        ).one()
        return int(row[0]), row[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelbay.jobs.runner")
    parser.add_argument("--job", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("onnx_ir", "onnxscript", "torch.onnx"):  # a line per export pass
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return run(args.job, args.token, args.work)


if __name__ == "__main__":
    sys.exit(main())
