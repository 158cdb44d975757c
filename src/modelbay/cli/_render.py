"""Rich renderings of the server's records: models, versions, deployments, tenants, keys."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.filesize import decimal
from rich.table import Table
from rich.text import Text

Record = Mapping[str, Any]


def models_table(models: Sequence[Record]) -> Table:
    """One row per model: name, latest version, aliases, task, description."""
    table = Table("name", "latest", "aliases", "task", "description", title="models")
    for model in models:
        latest = model.get("latest_version")
        table.add_row(
            Text(str(model["name"]), style="bold"),
            "-" if latest is None else str(latest),
            aliases_text(model.get("aliases") or {}),
            str(model.get("task") or "-"),
            Text(str(model.get("description") or "")),
        )
    return table


def model_grid(model: Record) -> Table:
    """A model's fields as a two-column grid."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    tags = model.get("tags") or {}
    rows = {
        "model": model["name"],
        "description": model.get("description") or "-",
        "task": model.get("task") or "-",
        "labels": ", ".join(model.get("labels") or []) or "-",
        "tags": ", ".join(f"{k}={v}" for k, v in tags.items()) or "-",
        "aliases": aliases_text(model.get("aliases") or {}),
        "tenant": model.get("tenant") or "-",
        "access": access_text(model),
        "created": when(model.get("created_at")),
        "updated": when(model.get("updated_at")),
    }
    for key, value in rows.items():
        grid.add_row(key, Text(str(value)))
    return grid


def language_model_grid(version: Record) -> Table | None:
    """What an LLM or embedding version records of itself (None for tensor models)."""
    metadata = version.get("metadata") or {}
    facts: dict[str, Any] = {}
    if isinstance(metadata.get("llm"), dict):
        llm = metadata["llm"]
        template = llm.get("chat_template")
        facts = {
            "architecture": llm.get("architecture"),
            "parameters": f"{llm.get('parameters', 0):,}",
            "context length": f"{llm.get('context_length', 0):,} tokens",
            "quantization": llm.get("quantization"),
            "chat template": f"yes ({len(template):,} characters)" if template else "no (ChatML)",
            "call with": "POST /v1/chat/completions, /v1/completions (modelbay chat)",
        }
    elif isinstance(metadata.get("embedding"), dict):
        embedding = metadata["embedding"]
        facts = {
            "dimensions": embedding.get("dimensions"),
            "max sequence": f"{embedding.get('max_seq_length', 0)} tokens",
            "call with": "POST /v1/embeddings, or V2 inference (input 'text')",
        }
    if not facts:
        return None
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("version", Text(str(version["version"])))
    for key, value in facts.items():
        grid.add_row(key, Text(str(value)))
    return grid


def versions_table(versions: Sequence[Record]) -> Table:
    """One row per version: number, format, files, size, aliases, creation, description."""
    table = Table("version", "format", "files", "size", "aliases", "created", "description")
    for version in versions:
        files = version.get("files") or []
        table.add_row(
            str(version["version"]),
            str(version["format"]),
            str(len(files)),
            decimal(sum(int(f["size"]) for f in files)),
            ", ".join(version.get("aliases") or []) or "-",
            when(version.get("created_at")),
            Text(str(version.get("description") or "")),
        )
    return table


def files_table(files: Sequence[Record]) -> Table:
    """One row per file of a version: path, size and sha256 digest."""
    table = Table("path", "size", title="files")
    table.add_column("sha256", overflow="fold")
    for entry in files:
        table.add_row(Text(str(entry["path"])), decimal(int(entry["size"])), str(entry["digest"]))
    return table


def signature_table(signature: Record, title: str = "signature") -> Table:
    """Inputs and outputs of a signature: kind, name, datatype, shape (-1: any size)."""
    table = Table("", "name", "datatype", "shape", title=title)
    for kind in ("inputs", "outputs"):
        for spec in signature.get(kind) or []:
            shape = "[" + ", ".join(str(d) for d in spec["shape"]) + "]"
            table.add_row(kind[:-1], Text(str(spec["name"])), str(spec["datatype"]), shape)
    return table


def version_heading(version: Record) -> Text:
    """``name version N (format, entrypoint)`` with the version's aliases."""
    text = Text()
    text.append(f"{version['model']} ", style="bold")
    text.append(f"version {version['version']}", style="bold green")
    text.append(f"  format {version['format']}, entrypoint {version['entrypoint']}")
    aliases = version.get("aliases") or []
    if aliases:
        text.append(f"  aliases {', '.join(aliases)}", style="cyan")
    return text


def access_text(model: Record) -> str:
    """``public`` or ``private``, and the tenants the model is shared with."""
    shared = model.get("shared_with") or []
    visibility = str(model.get("visibility") or "private")
    return f"{visibility}, shared with {', '.join(shared)}" if shared else visibility


def aliases_text(aliases: Mapping[str, Any]) -> str:
    """``alias=version`` pairs, or ``-``."""
    return ", ".join(f"{alias}={number}" for alias, number in sorted(aliases.items())) or "-"


def when(timestamp: Any) -> str:
    """An ISO timestamp as ``YYYY-MM-DD HH:MM`` (UTC), or ``-``."""
    if not timestamp:
        return "-"
    return str(timestamp).replace("T", " ")[:16]


def deployments_table(deployments: Sequence[Record]) -> Table:
    """One row per deployment: target, canary, ready/desired replicas per version, batching."""
    table = Table("name", "model", "target", "canary", "replicas", "batching", "state")
    table.title = "deployments"
    for deployment in deployments:
        status = deployment.get("status") or {}
        table.add_row(
            Text(str(deployment["name"]), style="bold"),
            str(deployment["model"]),
            str(deployment["target"]),
            canary_text(deployment),
            replicas_text(status.get("versions") or []),
            batching_text(deployment["config"]),
            state_text(status),
        )
    return table


def deployment_grid(deployment: Record) -> Table:
    """A deployment's desired state and serving settings as a two-column grid."""
    config = deployment["config"]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    rows: dict[str, str | Text] = {
        "deployment": str(deployment["name"]),
        "model": str(deployment["model"]),
        "target": str(deployment["target"]),
        "canary": canary_text(deployment),
        "state": state_text(deployment.get("status") or {}),
        "replicas": f"{config['min_replicas']} to {config['max_replicas']}",
        "batching": batching_text(config),
        "queue": f"{config['queue_capacity']} requests",
        "request timeout": f"{config['request_timeout_ms']:g} ms",
        "threads": f"{config['threads_per_replica']} per replica",
        "scale up": (
            f"above {config['target_inflight_per_replica']:g} in flight per replica "
            f"for {config['scale_up_delay_s']:g} s"
        ),
        "scale down": f"one replica per {config['scale_down_delay_s']:g} s of lower load",
        "scale to zero": f"after {config['idle_to_zero_s']:g} s idle (when min replicas is 0)",
        "created": when(deployment.get("created_at")),
        "updated": when(deployment.get("updated_at")),
    }
    for key, value in rows.items():
        grid.add_row(key, value if isinstance(value, Text) else Text(value))
    return grid


def deployment_versions_table(status: Record) -> Table:
    """What runs per version of a deployment: role, replicas, queue, processes, last error."""
    table = Table("version", "role", "ready", "starting", "desired", "queued", "pids", "error")
    for version in status.get("versions") or []:
        table.add_row(
            str(version["version"]),
            str(version["role"]),
            str(version["replicas"]),
            str(version["starting"]),
            str(version["desired"]),
            str(version["queued"]),
            ", ".join(str(pid) for pid in version.get("pids") or []) or "-",
            Text(str(version.get("error") or "-"), style="red" if version.get("error") else ""),
        )
    return table


def canary_text(deployment: Record) -> str:
    """``target (weight%)`` of the canary, or ``-``."""
    canary = deployment.get("canary_target")
    return f"{canary} ({deployment.get('canary_weight', 0)}%)" if canary else "-"


def replicas_text(versions: Sequence[Record]) -> str:
    """``vN: ready/desired`` per running version (canaries marked), one per line."""
    lines = []
    for v in versions:
        role = " canary" if v["role"] == "canary" else ""
        lines.append(f"v{v['version']}{role}: {v['replicas']}/{v['desired']}")
    return "\n".join(lines) or "-"


def batching_text(config: Record) -> str:
    """Max rows per batch and how long a batch waits to fill."""
    return f"{config['max_batch_size']} rows, {config['max_queue_delay_ms']:g} ms"


def state_text(status: Record) -> Text:
    """The deployment's state, green when ready, with its error in red."""
    state = str(status.get("state") or "pending")
    text = Text(state, style={"ready": "green", "error": "red"}.get(state, "yellow"))
    if status.get("error"):
        text.append(f": {status['error']}", style="red")
    return text


def tenants_table(tenants: Sequence[Record]) -> Table:
    """One row per tenant: name, limits of requests and of LLM tokens, creation."""
    table = Table("name", "rate limit", "daily quota", title="tenants")
    for column in ("token rate", "token quota", "jobs", "training/day", "created"):
        table.add_column(column)
    for tenant in tenants:
        table.add_row(
            Text(str(tenant["name"]), style="bold"),
            rate_text(tenant.get("rate_limit_rps")),
            quota_text(tenant.get("daily_quota")),
            tokens_text(tenant.get("tokens_per_minute"), "min"),
            tokens_text(tenant.get("tokens_per_day"), "day"),
            str(tenant.get("max_jobs") or "unlimited"),
            _seconds_text(tenant.get("training_seconds_per_day")),
            when(tenant.get("created_at")),
        )
    return table


def accounts_table(accounts: Sequence[Record]) -> Table:
    """One row per account: name, kind, status, active keys, creation."""
    table = Table("name", "kind", "status", "active keys", "created", title="accounts")
    for account in accounts:
        table.add_row(
            Text(str(account["name"]), style="bold"),
            str(account["kind"]),
            Text(str(account["status"]), style="green" if account["status"] == "active" else "red"),
            str(account["active_keys"]),
            when(account.get("created_at")),
        )
    return table


def keys_table(keys: Sequence[Record]) -> Table:
    """One row per API key: id, name, tenant, role, status, expiry, limits, creation."""
    table = Table("key id", "name", "tenant", "role", "status", "expires", title="keys")
    for column in ("rate limit", "quota", "token rate", "token quota", "created"):
        table.add_column(column)
    for key in keys:
        table.add_row(
            Text(str(key["key_id"]), style="bold"),
            Text(str(key["name"])),
            str(key["tenant"]),
            str(key["role"]),
            status_text(key),
            expiry_text(key),
            rate_text(key.get("rate_limit_rps")),
            quota_text(key.get("daily_quota")),
            tokens_text(key.get("tokens_per_minute"), "min"),
            tokens_text(key.get("tokens_per_day"), "day"),
            when(key.get("created_at")),
        )
    return table


def key_grid(key: Record) -> Table:
    """An API key's fields (never its secret) as a two-column grid."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    rows: dict[str, str | Text] = {
        "key id": str(key["key_id"]),
        "name": Text(str(key["name"])),
        "tenant": str(key["tenant"]),
        "account": Text(str(key.get("account") or "-")),
        "role": str(key["role"]),
        "scopes": ", ".join(key.get("scopes") or []) or "-",
        "status": status_text(key),
        "rate limit": rate_text(key.get("rate_limit_rps")),
        "daily quota": quota_text(key.get("daily_quota")),
        "token rate": tokens_text(key.get("tokens_per_minute"), "min"),
        "token quota": tokens_text(key.get("tokens_per_day"), "day"),
        "expires": expiry_text(key),
        "created": f"{when(key.get('created_at'))} by {key.get('created_by') or '-'}",
    }
    if key.get("revoked_at"):
        rows["revoked"] = when(key["revoked_at"])
    for field, value in rows.items():
        grid.add_row(field, value)
    return grid


def whoami_grid(identity: Record) -> Table:
    """The caller's key, tenant, role and scopes as a two-column grid."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("key id", str(identity["key_id"]))
    grid.add_row("name", Text(str(identity["key_name"])))
    grid.add_row("account", Text(str(identity.get("account") or "-")))
    grid.add_row("tenant", str(identity["tenant"]))
    grid.add_row("role", str(identity["role"]))
    grid.add_row("scopes", ", ".join(identity.get("scopes") or []) or "-")
    return grid


def usage_table(usage: Sequence[Record]) -> Table:
    """One row per key and UTC day: requests, compute seconds, LLM tokens and training
    CPU seconds, then a totals row."""
    table = Table("day", "tenant", "key id", title="usage")
    for column in ("requests", "compute s", "prompt tokens", "completion tokens", "training s"):
        table.add_column(column, justify="right")
    for row in usage:
        table.add_row(
            str(row["day"]),
            str(row["tenant"]),
            str(row["key_id"]),
            str(row["requests"]),
            f"{float(row['compute_seconds']):.3f}",
            str(row.get("prompt_tokens", 0)),
            str(row.get("completion_tokens", 0)),
            f"{float(row.get('training_seconds', 0)):.1f}",
        )
    table.add_section()
    compute = sum(float(row["compute_seconds"]) for row in usage)
    training = sum(float(row.get("training_seconds", 0)) for row in usage)
    table.add_row(
        Text("total", style="bold"),
        "",
        "",
        str(_total(usage, "requests")),
        f"{compute:.3f}",
        str(_total(usage, "prompt_tokens")),
        str(_total(usage, "completion_tokens")),
        f"{training:.1f}",
    )
    return table


def _total(rows: Sequence[Record], field: str) -> int:
    return sum(int(row.get(field, 0)) for row in rows)


def status_text(key: Record) -> Text:
    """A key's status: active in green, expired in yellow, revoked in red."""
    status = str(key.get("status") or "active")
    return Text(status, style={"active": "green", "revoked": "red"}.get(status, "yellow"))


def expiry_text(key: Record) -> str:
    """When a key expires, or ``never``."""
    return when(key["expires_at"]) if key.get("expires_at") else "never"


def rate_text(rps: Any) -> str:
    """A rate limit as ``N/s``, or ``-`` (unlimited)."""
    return "-" if rps is None else f"{float(rps):g}/s"


def quota_text(quota: Any) -> str:
    """A daily quota as ``N/day``, or ``-`` (unlimited)."""
    return "-" if quota is None else f"{int(quota)}/day"


def tokens_text(limit: Any, per: str) -> str:
    """A limit of LLM tokens as ``N tokens/min`` (``per``), or ``-`` (unlimited)."""
    return "-" if limit is None else f"{int(limit)} tokens/{per}"


def _seconds_text(seconds: Any) -> str:
    return "unlimited" if seconds is None else f"{float(seconds):g} s"
