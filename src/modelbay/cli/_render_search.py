"""Rich renderings of a hyperparameter search: what it searches, its trials, the best one
and the parameters' importances."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from modelbay.cli._render import when
from modelbay.cli._render_training import num, plain, state_text

Record = Mapping[str, Any]

PRUNER_FIELDS = {
    "median": ("startup_trials", "warmup_epochs"),
    "percentile": ("percentile", "startup_trials", "warmup_epochs"),
    "halving": ("min_epochs", "reduction_factor"),
}
"""The pruner settings each kind uses."""


def search_grid(job: Record) -> Table:
    """The search job: what it searches over, how, and where it stands."""
    spec = job.get("spec") or {}
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    version = job.get("model_version")
    pruner = dict(spec.get("pruner") or {})
    kind = str(pruner.get("kind", "-"))
    settings = {k: pruner.get(k) for k in PRUNER_FIELDS.get(kind, ())}
    parallel = spec.get("parallel")
    rows: dict[str, Any] = {
        "job": f"{job['id']} (hyperparameter search)",
        "state": state_text(str(job["state"])),
        "families": ", ".join(spec.get("families") or []),
        "target": f"{spec.get('target', '-')} ({spec.get('task', '-')})",
        "dataset": f"{job.get('dataset')} version {job.get('dataset_version')}",
        "model": f"{job.get('model')} version {version}" if version else job.get("model"),
        "deploy": "yes" if job.get("deploy") else "no",
        "maximises": spec.get("metric", "-"),
        "trials": f"{spec.get('trials')}, "
        + (f"{parallel} at a time" if parallel else "as many at a time as job workers"),
        "pruner": f"{kind} ({_pairs(settings)})" if settings else kind,
        "baseline": "trial 0 trains the defaults" if spec.get("baseline") else "no",
        "fixed": _pairs(spec.get("params") or {}) or "-",
        "attempts": job.get("attempts"),
        "cpu seconds": job.get("cpu_seconds"),
        "created": when(job.get("created_at")),
        "finished": when(job.get("finished_at")),
    }
    if job.get("error"):
        rows["error"] = Text(str(job["error"]), style="red")
    for key, value in rows.items():
        grid.add_row(key, value if isinstance(value, Text) else Text(str(value)))
    return grid


def space_table(spec: Record) -> Table:
    table = Table("hyperparameter", "searched over", title="search space")
    families = spec.get("families") or []
    if len(families) > 1:
        table.add_row("family", ", ".join(families))
    for name, dim in (spec.get("space") or {}).items():
        table.add_row(name, _dimension(dim))
    return table


def _dimension(dim: Record) -> str:
    if "choices" in dim:
        return " | ".join(str(c) for c in dim["choices"])
    scale = ", log" if dim.get("log") else ""
    step = f", step {num(dim['step'])}" if dim.get("step") else ""
    return f"{num(dim.get('low'))} to {num(dim.get('high'))}{scale}{step}"


def trial_rows(job: Record, children: Sequence[Record]) -> list[dict[str, Any]]:
    """Each trial: the search's record of it once it ended, else its job's state now."""
    final = (job.get("result") or {}).get("search")
    if final:
        return list(final.get("trials") or [])
    spec = job.get("spec") or {}
    drawn = [*(spec.get("space") or {}), *(["family"] if len(spec.get("families", [])) > 1 else [])]
    rows = []
    for child in children:
        result = child.get("result") or {}
        if "trial" not in result:
            continue
        state = str(child["state"])
        if state == "succeeded":
            state = "pruned" if result.get("pruned") else "complete"
        trial_spec = child.get("spec") or {}
        rows.append(
            {
                "trial": result["trial"],
                "job": child["id"],
                "state": state,
                "value": result.get("value") if not result.get("pruned") else None,
                "params": {k: plain(trial_spec[k]) for k in drawn if k in trial_spec},
                "pruned_at_epoch": result.get("pruned_at_epoch"),
            }
        )
    return sorted(rows, key=lambda row: int(row["trial"]))


def trials_table(rows: Sequence[Record], metric: str) -> Table:
    table = Table("trial", "job", "state", metric, "pruned at", "parameters", title="trials")
    best = _best(rows)
    for row in rows:
        state = str(row.get("state"))
        style = "bold green" if best is not None and row is best else ""
        epoch = row.get("pruned_at_epoch")
        table.add_row(
            Text(str(row.get("trial")), style=style),
            str(row.get("job") or "-"),
            _trial_state(state),
            num(row.get("value")),
            f"epoch {epoch}" if epoch else "-",
            _pairs(row.get("params") or {}),
        )
    return table


def best_line(rows: Sequence[Record], metric: str, finished: bool) -> Text:
    best = _best(rows)
    pruned = sum(row.get("state") == "pruned" for row in rows)
    counts = f"{len(rows)} trials, {pruned} pruned"
    if best is None:
        return Text(f"{counts}; no trial complete yet")
    label = "best trial" if finished else "best so far"
    return Text.assemble(
        f"{counts}; {label}: ",
        (f"trial {best.get('trial')}", "bold green"),
        f", {metric} {num(best.get('value'))} ({_pairs(best.get('params') or {})})",
    )


def importances_table(importances: Mapping[str, float]) -> Table:
    table = Table("hyperparameter", "importance", "", title="parameter importances")
    for name, value in importances.items():
        table.add_row(name, f"{value:.3f}", "█" * round(20 * value))
    return table


def _best(rows: Sequence[Record]) -> Record | None:
    complete = [r for r in rows if r.get("state") == "complete" and r.get("value") is not None]
    return max(complete, key=lambda r: float(r["value"]), default=None)


def _trial_state(state: str) -> Text:
    styles = {"complete": "green", "pruned": "yellow", "fail": "red", "failed": "red"}
    return Text(state, style=styles.get(state, "")) if state in styles else state_text(state)


def _pairs(values: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{k}={num(v) if isinstance(v, float) else plain(v)}" for k, v in values.items()
    )
