"""Rich renderings of datasets and training jobs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.filesize import decimal
from rich.table import Table
from rich.text import Text

from modelbay.cli._render import when
from modelbay.training.spec import applies

Record = Mapping[str, Any]

_STATE_STYLE = {
    "queued": "yellow",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def datasets_table(datasets: Sequence[Record]) -> Table:
    table = Table("name", "versions", "format", "rows", "size", "updated", title="datasets")
    for d in datasets:
        latest = d.get("latest") or {}
        schema = latest.get("schema") or {}
        table.add_row(
            Text(str(d["name"]), style="bold"),
            str(d.get("versions", 0)),
            str(latest.get("format", "-")),
            str(schema.get("rows", "-")),
            decimal(int(latest.get("size", 0))),
            when(d.get("updated_at")),
        )
    return table


def dataset_grid(dataset: Record) -> Table:
    latest = dataset.get("latest") or {}
    schema = latest.get("schema") or {}
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    rows = {
        "dataset": dataset["name"],
        "version": f"{latest.get('version', '-')} of {dataset.get('versions', 0)}",
        "format": f"{latest.get('format', '-')} ({schema.get('kind', '-')})",
        "file": f"{latest.get('filename', '-')}, {decimal(int(latest.get('size', 0)))}",
        "digest": latest.get("digest", "-"),
        "rows": schema.get("rows", "-"),
        "tenant": dataset.get("tenant", "-"),
        "created": when(latest.get("created_at")),
    }
    if schema.get("image_shape"):
        rows["image shape"] = "x".join(str(n) for n in schema["image_shape"])
    for key, value in rows.items():
        grid.add_row(key, Text(str(value)))
    return grid


def columns_table(schema: Record) -> Table:
    table = Table(title="columns")
    table.add_column("column", no_wrap=True)
    for name in ("dtype", "numeric", "missing", "unique", "min", "max", "mean", "std"):
        table.add_column(name)
    for col in schema.get("columns") or []:
        table.add_row(
            Text(str(col.get("name")), style="bold"),
            str(col.get("dtype", "-")),
            "yes" if col.get("numeric") else "no",
            str(col.get("missing", 0)),
            str(col.get("unique", "-")),
            num(col.get("min")),
            num(col.get("max")),
            num(col.get("mean")),
            num(col.get("std")),
        )
    return table


def balance_table(counts: Mapping[str, int], title: str) -> Table:
    total = sum(counts.values()) or 1
    table = Table("value", "count", "share", title=title)
    for value, count in counts.items():
        table.add_row(Text(str(value)), str(count), f"{100 * count / total:.1f}%")
    return table


def class_balances(schema: Record) -> list[tuple[str, Mapping[str, int]]]:
    """(title, counts) for the image classes, and for each column with few values."""
    found: list[tuple[str, Mapping[str, int]]] = []
    if schema.get("class_balance"):
        found.append(("class balance", schema["class_balance"]))
    for col in schema.get("columns") or []:
        top = col.get("top")
        if top and not schema.get("class_balance") and len(top) <= 20:
            found.append((f"values of '{col.get('name')}'", top))
    return found


def jobs_table(jobs: Sequence[Record]) -> Table:
    table = Table(
        "job",
        "kind",
        "state",
        "family",
        "dataset",
        "model",
        "epoch",
        "metric",
        "created",
        title="jobs",
    )
    for job in jobs:
        spec = job.get("spec") or {}
        version = job.get("model_version")
        metrics = job.get("metrics") or {}
        search = job.get("kind") == "search"
        table.add_row(
            str(job["id"]),
            _kind(job),
            _job_state(job),
            ",".join(spec.get("families") or []) if search else str(spec.get("family", "-")),
            f"{job.get('dataset')}:{job.get('dataset_version')}",
            f"{job.get('model')}:{version}" if version else str(job.get("model")),
            "-" if search else str(metrics.get("epoch", "-")),
            metric_text(metrics, spec.get("metric") if search else None),
            when(job.get("created_at")),
        )
    return table


def _kind(job: Record) -> str:
    """``search``, ``trial N of SEARCH`` or the job's kind."""
    trial = (job.get("result") or {}).get("trial")
    if job.get("parent") is not None and trial is not None:
        return f"trial {trial} of {job['parent']}"
    return str(job.get("kind", "train"))


def _job_state(job: Record) -> Text:
    """The state; a trial its search's pruner stopped shows as pruned."""
    if job.get("state") == "succeeded" and (job.get("result") or {}).get("pruned"):
        return Text("pruned", style="yellow")
    return state_text(str(job["state"]))


def job_grid(job: Record) -> Table:
    full = dict(job.get("spec") or {})
    spec = dict(full)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    version = job.get("model_version")
    rows: dict[str, Any] = {
        "job": job["id"],
        "state": state_text(str(job["state"])),
        "family": spec.pop("family", "-"),
        "target": f"{spec.pop('target', '-')} ({spec.pop('task', '-')})",
        "dataset": f"{job.get('dataset')} version {job.get('dataset_version')}",
        "model": f"{job.get('model')} version {version}" if version else job.get("model"),
        "deploy": "yes" if job.get("deploy") else "no",
        "attempts": job.get("attempts"),
        "cpu seconds": job.get("cpu_seconds"),
        "created": when(job.get("created_at")),
        "started": when(job.get("started_at")),
        "finished": when(job.get("finished_at")),
    }
    if job.get("error"):
        rows["error"] = Text(str(job["error"]), style="red")
    rows["hyperparameters"] = ", ".join(
        f"{k}={plain(v)}" for k, v in spec.items() if _shown(k, v, full)
    )
    for key, value in rows.items():
        grid.add_row(key, value if isinstance(value, Text) else Text(str(value)))
    return grid


def _shown(key: str, value: Any, spec: Mapping[str, Any]) -> bool:
    return value is not None and key != "features" and applies(key, spec)


def plain(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def metrics_table(metrics: Mapping[str, Any], title: str = "metrics") -> Table:
    table = Table("metric", "value", title=title)
    for key, value in metrics.items():
        table.add_row(key, num(value))
    return table


def state_text(state: str) -> Text:
    return Text(state, style=_STATE_STYLE.get(state, ""))


def metric_text(metrics: Mapping[str, Any], searched: str | None = None) -> str:
    """The job's headline metric; a search's (which maximises ``searched``): its best
    trial's validation value until its test metrics come."""
    if searched and "best_value" in metrics and "accuracy" not in metrics and "r2" not in metrics:
        return f"best {searched} {num(metrics['best_value'])}"
    for key in ("accuracy", "r2", "val_accuracy", "val_r2", "loss"):
        if key in metrics:
            return f"{key} {num(metrics[key])}"
    return "-"


def epoch_line(data: Mapping[str, Any]) -> str:
    if "trials_complete" in data:  # a search's progress
        best = f"; best {num(data['best_value'])}" if "best_value" in data else ""
        done = data.get("epoch")
        return (
            f"{done} trial{'' if done == 1 else 's'} done: {data['trials_complete']} complete, "
            f"{data.get('trials_pruned', 0)} pruned, {data.get('trials_failed', 0)} failed{best}"
        )
    label = "round" if "clients" in data else "epoch"  # a federated job's epochs are rounds
    parts = [f"{label} {data.get('epoch')}"]
    keys = ("clients", "loss", "val_loss", "val_accuracy", "val_r2", "lr", "samples_per_s")
    for key in (*keys, "dp_epsilon"):
        if key in data:
            parts.append(f"{key} {num(data[key])}")
    return "  ".join(parts)


def num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
