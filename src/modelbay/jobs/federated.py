"""A federated job with real clients: its coordinator, run by a worker beside its training
job (``python -m modelbay.jobs.runner``, kind ``federated``).

It builds the initial global model from the job's spec and dataset (which define the
feature columns, target and classes, and whose validation and test splits the server
evaluates on), opens the federation and waits for ``clients`` to join over the API with
their own API keys (``api.federated``). The feature normalisation comes from the joined
clients' sums and sums of squares. Then, round after round, it publishes the global weights
(a blob), waits for the clients' updates and aggregates them (``training.aggregation``,
Flower's strategies). A round closes when every client it opened for has answered; or when
``min_clients`` have and the others are gone (not heard from for ``LIVENESS_S``) or the
round timed out; with fewer than ``min_clients`` by the timeout the job fails. A client
that did not answer is dropped. Every round is a job epoch (metrics and a checkpoint): a
restarted coordinator resumes from the last one, with the clients that joined.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelbay.errors import ModelbayError
from modelbay.jobs.hooks import LeaseLost
from modelbay.jobs.runner import JobContext, load_job_table
from modelbay.protocols.federated import decode_tensors, encode_tensors
from modelbay.registry.federated import LIVENESS_S, ClientRecord, FederationStore, deadline_in
from modelbay.registry.locks import RegistryLock
from modelbay.registry.tables import JobRow, utcnow
from modelbay.training.aggregation import ClientUpdate
from modelbay.training.evaluation import TrainResult
from modelbay.training.federated import CHECKPOINT, Federation
from modelbay.training.local import layout, round_lr, weights
from modelbay.training.spec import TrainSpec
from modelbay.training.trainer import Cancelled

POLL_S = 0.25


def run_federated(ctx: JobContext) -> TrainResult:
    """Coordinate the job's rounds with its clients; the exported global model."""
    spec = TrainSpec.model_validate(ctx.job.spec)
    table = load_job_table(ctx.engine, ctx.store, ctx.job, ctx.work)
    federation = Federation.build(table, spec, ctx.settings.job_threads)
    coordinator = Coordinator(ctx, spec, federation)
    outcome = "failed"
    try:
        result = coordinator.run()
        outcome = "done"
        return result
    except LeaseLost:
        outcome = ""  # another worker holds the job now: its federation is its own
        raise
    finally:
        if outcome:
            coordinator.end(outcome)


class Coordinator:
    """The rounds of one federated job."""

    def __init__(self, ctx: JobContext, spec: TrainSpec, federation: Federation):
        self.ctx, self.spec, self.fed = ctx, spec, federation
        self.job_id = ctx.job.id
        self.store = FederationStore(ctx.engine)
        self.lock = RegistryLock(ctx.engine)
        self.path = ctx.work / "train" / CHECKPOINT
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ended = False

    def run(self) -> TrainResult:
        spec, hooks, fed = self.spec, self.ctx.hooks, self.fed
        done = self._resume()
        self.store.start(
            self.job_id,
            layout=layout(fed.model),
            row_shape=list(fed.features.shape[1:]),
            classes=fed.table.classes if spec.task == "classification" else None,
            deadline=deadline_in(spec.round_timeout_s),
        )
        if done == 0:
            joined = self._wait_for_clients()
            examples = fed.fit_normalization([_statistics(c) for c in joined])
            hooks.on_log(
                f"{len(joined)} clients joined with {examples} rows; the feature "
                "normalisation comes from their statistics"
            )
        for server_round in range(done + 1, spec.rounds + 1):
            self._round(server_round)
        self.end("done")  # the clients leave while the model is exported
        return fed.finish(
            self.ctx.work / "train", hooks, self.ctx.settings.job_threads, spec.rounds
        )

    def end(self, stage: str) -> None:
        if not self.ended:
            self.ended = True
            with self.lock.held():
                self._delete(self.store.end(self.job_id, stage))

    def _resume(self) -> int:
        """The round of the job's last checkpoint (0: none), loaded into the model."""
        with Session(self.ctx.engine) as s:
            digest = s.scalar(select(JobRow.checkpoint_digest).where(JobRow.id == self.job_id))
        if digest is None:
            return 0
        resume = self.ctx.work / "resume.safetensors"
        self.ctx.store.copy_to(digest, resume)
        done = self.fed.restore(resume)
        self.ctx.hooks.on_log(f"resuming from the checkpoint of round {done}")
        return done

    def _wait_for_clients(self) -> list[ClientRecord]:
        """The clients that joined: ``clients`` of them, or at least ``min_clients`` when
        the wait times out."""
        spec, hooks = self.spec, self.ctx.hooks
        hooks.on_log(
            f"waiting for {spec.clients} clients to join (`modelbay federated join "
            f"{self.job_id} --data FILE`), {spec.round_timeout_s:g} s at most"
        )
        deadline = time.monotonic() + spec.round_timeout_s
        seen: set[str] = set()
        while True:
            self._check_cancelled()
            joined = self.store.clients(self.job_id)
            for client in joined:
                if client.name not in seen:
                    seen.add(client.name)
                    hooks.on_log(f"client {client.name} joined with {client.examples} rows")
            if len(joined) >= spec.clients:
                return joined
            if time.monotonic() >= deadline:
                if len(joined) >= (spec.min_clients or spec.clients):
                    return joined
                raise ModelbayError(
                    f"{len(joined)} of the {spec.min_clients} clients needed joined within "
                    f"round_timeout_s ({spec.round_timeout_s:g} s)",
                    status=422,
                )
            time.sleep(POLL_S)

    def _round(self, server_round: int) -> None:
        spec, hooks, fed = self.spec, self.ctx.hooks, self.fed
        started = time.perf_counter()
        minimum = spec.min_clients or spec.clients
        active = [c.name for c in self.store.clients(self.job_id) if c.state == "active"]
        if len(active) < minimum:
            raise ModelbayError(
                f"{len(active)} clients remain before round {server_round}; the job needs "
                f"min_clients {minimum}",
                status=422,
            )
        self._open(server_round, active)
        hooks.on_log(f"round {server_round} open for {len(active)} clients")
        answered = self._wait_for_updates(server_round, active, minimum)
        updates = self._read_updates(server_round, answered)
        fed.apply(updates, server_round)
        dropped = sorted(set(active) - {u.client for u in updates})
        with self.lock.held():  # "rows out, blobs out" as one step for every process
            self._delete(self.store.close_round(self.job_id, server_round, dropped))
        if dropped:
            hooks.on_log(
                f"round {server_round}: dropped {', '.join(dropped)} (no update); it closed "
                f"with {len(updates)} clients"
            )
        metrics = fed.round_metrics(server_round, updates, started)
        fed.save(self.path, server_round)
        hooks.on_epoch(server_round, metrics)
        hooks.on_checkpoint(self.path, server_round)

    def _open(self, server_round: int, active: list[str]) -> None:
        staged = self.ctx.store.staging_dir() / "global.safetensors"
        staged.write_bytes(
            encode_tensors(weights(self.fed.model, full=True), {"round": str(server_round)})
        )
        try:
            with self.lock.held():
                blob = self.ctx.store.put_file(staged)
                stale = self.store.open_round(
                    self.job_id,
                    server_round,
                    digest=blob.digest,
                    lr=round_lr(self.spec, server_round),
                    selected=active,
                    deadline=deadline_in(self.spec.round_timeout_s),
                )
                self._delete(stale)
        finally:
            shutil.rmtree(staged.parent, ignore_errors=True)

    def _wait_for_updates(self, server_round: int, selected: list[str], minimum: int) -> set[str]:
        """The clients whose updates close the round (see the module's docstring)."""
        deadline = time.monotonic() + self.spec.round_timeout_s
        while True:
            self._check_cancelled()
            answered = {u.client for u in self.store.updates(self.job_id, server_round)}
            missing = set(selected) - answered
            if not missing:
                return answered
            now = utcnow()
            alive = [
                c.name
                for c in self.store.clients(self.job_id)
                if c.name in missing and (now - c.last_seen).total_seconds() < LIVENESS_S
            ]
            timed_out = time.monotonic() >= deadline
            if len(answered) >= minimum and (not alive or timed_out):
                return answered
            if timed_out:
                raise ModelbayError(
                    f"round {server_round} timed out after {self.spec.round_timeout_s:g} s "
                    f"with {len(answered)} updates; it needs min_clients {minimum}",
                    status=422,
                )
            time.sleep(POLL_S)

    def _read_updates(self, server_round: int, answered: set[str]) -> list[ClientUpdate]:
        shapes = layout(self.fed.model)
        names = list(shapes)
        updates = []
        for record in self.store.updates(self.job_id, server_round):
            if record.client not in answered:
                continue  # it came after the round was decided: its client is dropped
            path = self.ctx.work / "update.safetensors"
            self.ctx.store.copy_to(record.digest, path)
            tensors, _ = decode_tensors(path.read_bytes(), shapes)
            path.unlink()
            updates.append(
                ClientUpdate(
                    record.client, [tensors[n] for n in names], record.examples, record.metrics
                )
            )
        return updates

    def _check_cancelled(self) -> None:
        if self.ctx.hooks.cancelled():
            raise Cancelled("cancelled while waiting for the clients")

    def _delete(self, digests: Iterable[str]) -> None:
        for digest in digests:
            self.ctx.store.delete(digest)


def _statistics(client: ClientRecord) -> dict[str, Any]:
    return {"examples": client.examples, **client.statistics}
