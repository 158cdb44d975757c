"""Rich renderings of the server's records: models, versions, files, signatures."""

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
        "created": when(model.get("created_at")),
        "updated": when(model.get("updated_at")),
    }
    for key, value in rows.items():
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


def aliases_text(aliases: Mapping[str, Any]) -> str:
    """``alias=version`` pairs, or ``-``."""
    return ", ".join(f"{alias}={number}" for alias, number in sorted(aliases.items())) or "-"


def when(timestamp: Any) -> str:
    """An ISO timestamp as ``YYYY-MM-DD HH:MM`` (UTC), or ``-``."""
    if not timestamp:
        return "-"
    return str(timestamp).replace("T", " ")[:16]
