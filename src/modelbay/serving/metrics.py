"""Prometheus metrics of the data plane, on a registry owned by the app (no globals).

With several frontend processes (``modelbay serve --workers N``) ``PROMETHEUS_MULTIPROC_DIR``
is set: every process writes its values there and ``/metrics`` adds them up (the
library's multiprocess mode), so any frontend answers for the whole server.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_pid = os.getpid()


def _process_id() -> int:
    """This process's id, kept: the multiprocess mode asks for it on every update of every
    series to notice a fork, and ``os.getpid()`` is a system call (ten per V2 request)."""
    return _pid


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)
if os.environ.get(MULTIPROC_ENV):
    # Every metric of the server is made in this module, after this line: all of them use
    # this one value class (two would keep two views of the same files).
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_id)  # type: ignore[no-untyped-call]


def exposition(registry: CollectorRegistry) -> bytes:
    """The text format of this process's metrics, or of every frontend's when several."""
    return generate_latest(_source(registry))


def _source(registry: CollectorRegistry) -> CollectorRegistry:
    """The registry ``/metrics`` reads: this process's, or every frontend's added up."""
    if os.environ.get(MULTIPROC_ENV):
        combined = CollectorRegistry()
        MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
        return combined
    return registry


@dataclass
class HistogramTotals:
    """A histogram summed over a model's versions: cumulative counts per upper bound
    (ascending, +Inf left out: ``count`` is every observation) and the observations' sum."""

    bounds: list[float] = field(default_factory=list)
    cumulative: list[int] = field(default_factory=list)
    count: int = 0
    sum: float = 0.0


@dataclass
class ModelTotals:
    """A model's cumulative data-plane counters, as ``/metrics`` reports them (summed over
    versions and frontend processes): what a client differentiates between two reads."""

    requests: dict[str, int] = field(default_factory=dict)
    """Requests answered, by HTTP status."""
    latency_seconds: HistogramTotals = field(default_factory=HistogramTotals)
    queue_wait_seconds: HistogramTotals = field(default_factory=HistogramTotals)
    compute_seconds: HistogramTotals = field(default_factory=HistogramTotals)
    batch_size: HistogramTotals = field(default_factory=HistogramTotals)
    queue_depth: float = 0.0


_HISTOGRAMS = {
    "modelbay_request_duration_seconds": "latency_seconds",
    "modelbay_queue_wait_seconds": "queue_wait_seconds",
    "modelbay_compute_seconds": "compute_seconds",
    "modelbay_batch_size": "batch_size",
}
"""Histograms a model's totals report: metric name -> ``ModelTotals`` field."""


def model_totals(registry: CollectorRegistry, model: str) -> ModelTotals:
    """The counters of one model (every version of it), from the same source as
    ``/metrics``: with several frontends, all of them added up."""
    totals = ModelTotals()
    for name, attr in _HISTOGRAMS.items():  # no series yet: the bounds, all counts zero
        setattr(totals, attr, _histogram(None, model, _bounds_of(name)))
    for family in _source(registry).collect():
        if family.name == "modelbay_requests":
            requests: dict[str, int] = defaultdict(int)
            for sample in _of(family, model):
                if sample.name.endswith("_total"):
                    requests[sample.labels.get("status", "")] += round(sample.value)
            totals.requests = dict(sorted(requests.items()))
        elif family.name == "modelbay_queue_depth":
            totals.queue_depth = sum(s.value for s in _of(family, model))
        elif family.name in _HISTOGRAMS:
            bounds = _bounds_of(family.name)
            setattr(totals, _HISTOGRAMS[family.name], _histogram(family, model, bounds))
    return totals


def _bounds_of(name: str) -> tuple[float, ...]:
    return _BATCH_BUCKETS if name == "modelbay_batch_size" else _LATENCY_BUCKETS


def _of(family: Metric | None, model: str) -> Iterable[Any]:
    if family is None:
        return ()
    return (s for s in family.samples if s.labels.get("model") == model)


def _histogram(family: Metric | None, model: str, bounds: Iterable[float]) -> HistogramTotals:
    buckets: dict[float, float] = dict.fromkeys(map(float, bounds), 0.0)
    out = HistogramTotals()
    total = 0.0
    for sample in _of(family, model):
        if sample.name.endswith("_bucket"):
            bound = float(sample.labels["le"])
            if bound == float("inf"):
                total += sample.value
            else:
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
        elif sample.name.endswith("_sum"):
            out.sum += sample.value
    out.bounds = sorted(buckets)
    out.cumulative = [round(buckets[b]) for b in out.bounds]
    out.count = round(total)
    return out


def clean_dead_processes() -> None:
    """Drop the live gauges of frontends that are gone (one restarted in their place)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
        except PermissionError:
            pass


_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    30.0,
)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_TOKEN_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5, 10, 30)


class ServingMetrics:
    """Every stage of a request (queue, compute, total), batches, replicas, cold starts."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        labels = ["model", "version"]
        self.requests = Counter(
            "modelbay_requests",
            "Inference requests by answer status",
            [*labels, "status"],
            registry=self.registry,
        )
        self.queue_seconds = Histogram(
            "modelbay_queue_wait_seconds",
            "Time requests waited in the batching queue",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.compute_seconds = Histogram(
            "modelbay_compute_seconds",
            "Model compute time per batch",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "modelbay_request_duration_seconds",
            "Time from arrival to answer of a request",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "modelbay_batch_size",
            "Rows per batch run on a replica",
            labels,
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "modelbay_queue_depth",
            "Requests waiting in the batching queue",
            labels,
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.replicas = Gauge(
            "modelbay_replicas",
            "Replicas per deployment version by state",
            ["deployment", "version", "state"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.cold_starts = Counter(
            "modelbay_cold_starts",
            "Replica starts (load of a model into a replica)",
            labels,
            registry=self.registry,
        )
        self.cold_start_seconds = Histogram(
            "modelbay_cold_start_seconds",
            "Time from replica start to ready",
            labels,
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
            registry=self.registry,
        )
        self.replica_restarts = Counter(
            "modelbay_replica_restarts",
            "Replicas replaced after exiting unexpectedly",
            labels,
            registry=self.registry,
        )
        self.replica_timeouts = Counter(
            "modelbay_replica_timeouts",
            "Replicas killed for running a batch past the request timeout",
            labels,
            registry=self.registry,
        )
        llm = ["model", "version"]
        self.llm_ttft_seconds = Histogram(
            "modelbay_llm_time_to_first_token_seconds",
            "LLM requests: time from arrival to the first generated token",
            llm,
            buckets=_TOKEN_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.llm_inter_token_seconds = Histogram(
            "modelbay_llm_inter_token_seconds",
            "LLM streams: time between two events of a choice, per token",
            llm,
            buckets=_TOKEN_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.llm_tokens = Counter(
            "modelbay_llm_tokens",
            "LLM tokens by kind (prompt, completion); rate() gives tokens/s",
            [*llm, "kind"],
            registry=self.registry,
        )
        self.llm_sequences = Gauge(
            "modelbay_llm_sequences",
            "Sequences in the engine by state (running, waiting), as last reported",
            [*llm, "state"],
            registry=self.registry,
            multiprocess_mode="livemostrecent",
        )
        self.llm_kv_blocks = Gauge(
            "modelbay_llm_kv_blocks",
            "Paged KV cache blocks by state (used, free), as last reported",
            [*llm, "state"],
            registry=self.registry,
            multiprocess_mode="livemostrecent",
        )
        self.llm_preemptions = Gauge(
            "modelbay_llm_preemptions",
            "Sequences preempted (to be recomputed) since the replica started",
            llm,
            registry=self.registry,
            multiprocess_mode="livemostrecent",
        )
