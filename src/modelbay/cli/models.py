"""``modelbay models ...``: push, list, show, remove, alias, pull and share model versions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from modelbay.cli import _render as render
from modelbay.cli._session import (
    REF_METAVAR,
    JsonOpt,
    connect,
    console,
    echo_json,
    err_console,
    parse_ref,
)
from modelbay.client import ModelRef, ProgressCallback

app = typer.Typer(
    help="Manage models, versions, aliases and who may use them.", no_args_is_help=True
)

RefArg = Annotated[ModelRef, typer.Argument(parser=parse_ref, metavar=REF_METAVAR)]


@app.command()
def push(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(exists=True, help="Model file, or a directory of files")],
    name: Annotated[str, typer.Option("--name", "-n", help="Model to add the version to")],
    format: Annotated[
        str | None,
        typer.Option(help="torchscript, torch_export, onnx or sklearn (default: detect)"),
    ] = None,
    signature: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="JSON file of the signature")
    ] = None,
    entrypoint: Annotated[str | None, typer.Option(help="Which file is the model")] = None,
    description: Annotated[str, typer.Option(help="What changed in this version")] = "",
    metadata: Annotated[str | None, typer.Option(help="JSON object to record")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable")] = None,
    archive: Annotated[
        bool,
        typer.Option(
            "--archive", help="PATH is a .zip, .tar or .tar.gz of the files; the server unpacks it"
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Upload PATH as a new version of a model (created if needed)."""
    meta = _json_object(metadata, "--metadata")
    tags = _tags(tag or [])
    with connect(ctx) as client, upload_progress(enabled=not as_json) as progress:
        record = client.push(
            name,
            path,
            format=format,
            signature=signature,
            entrypoint=entrypoint,
            description=description,
            metadata=meta,
            tags=tags,
            progress=progress,
            archive=archive,
        )
    if as_json:
        echo_json(record)
        return
    console.print(Text("pushed ") + render.version_heading(record))
    console.print(render.files_table(record["files"]))
    console.print(render.signature_table(record["signature"]))


@app.command("list")
def list_models(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List models with their latest version and aliases."""
    with connect(ctx) as client:
        models = client.list_models()
    if as_json:
        echo_json(models)
    elif not models:
        console.print("no models yet: push one with `modelbay models push PATH --name NAME`")
    else:
        console.print(render.models_table(models))


@app.command()
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name")],
    as_json: JsonOpt = False,
) -> None:
    """Show a model, its versions, and the signature of its latest version."""
    with connect(ctx) as client:
        model = client.get_model(name)
        versions = client.list_versions(name)
    if as_json:
        echo_json({"model": model, "versions": versions})
        return
    console.print(render.model_grid(model))
    if not versions:
        console.print("no versions yet")
        return
    console.print(render.versions_table(versions))
    latest = versions[-1]
    facts = render.language_model_grid(latest)
    if facts is not None:
        console.print(facts)
        return
    title = f"signature of version {latest['version']}"
    console.print(render.signature_table(latest["signature"], title=title))


@app.command("rm")
def remove(
    ctx: typer.Context,
    ref: Annotated[ModelRef, typer.Argument(parser=parse_ref, metavar="NAME[:VERSION]")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
) -> None:
    """Delete one version (NAME:VERSION), or a whole model with all its versions (NAME)."""
    if ref.is_alias:
        raise typer.BadParameter(
            f"'{ref}' names an alias; give NAME:VERSION (or `modelbay models unalias`)"
        )
    with connect(ctx) as client:
        if ref.version is not None:
            client.delete_version(ref.name, ref.version)
            console.print(f"deleted {ref}")
            return
        if not yes:
            typer.confirm(f"Delete model '{ref.name}' and all its versions?", abort=True)
        client.delete_model(ref.name)
    console.print(f"deleted model {ref.name}")


@app.command()
def alias(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name")],
    alias: Annotated[str, typer.Argument(help="Alias, e.g. production")],
    version: Annotated[int, typer.Argument(min=1, help="Version the alias points to")],
) -> None:
    """Point ALIAS at VERSION of a model (creating or moving it)."""
    with connect(ctx) as client:
        client.set_alias(name, alias, version)
    console.print(f"{name}@{alias} -> version {version}")


@app.command()
def unalias(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name")],
    alias: Annotated[str, typer.Argument(help="Alias to remove")],
) -> None:
    """Remove an alias of a model; the version stays."""
    with connect(ctx) as client:
        client.delete_alias(name, alias)
    console.print(f"removed {name}@{alias}")


@app.command()
def pull(
    ctx: typer.Context,
    ref: RefArg,
    output: Annotated[
        Path, typer.Option("--output", "-o", file_okay=False, help="Directory to write into")
    ],
) -> None:
    """Download every file of a version (default: latest), checking each sha256."""
    with connect(ctx) as client:
        paths = client.download(ref.name, ref.version or "latest", output)
    size = sum(p.stat().st_size for p in paths)
    console.print(f"pulled {ref}: {len(paths)} file(s), {decimal(size)}, into {output}")
    for path in paths:
        console.print(Text(f"  {path}"))


@app.command()
def access(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name")],
    public: Annotated[
        bool | None,
        typer.Option(
            "--public/--private",
            help="public: every tenant may see it and infer; private: only its tenant",
        ),
    ] = None,
    share: Annotated[
        list[str] | None,
        typer.Option(metavar="TENANT", help="Also let this tenant see it and infer, repeatable"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Set who besides its tenant may use a model: --share replaces the tenants it is shared
    with; without --public/--private its visibility stays as it is."""
    if public is None and share is None:
        raise typer.BadParameter("give --public, --private or --share TENANT")
    with connect(ctx) as client:
        if public is None:
            visibility = str(client.get_model(name)["visibility"])
        else:
            visibility = "public" if public else "private"
        record = client.set_model_access(name, visibility, share or [])
    if as_json:
        echo_json(record)
        return
    console.print(f"model {name}: {render.access_text(record)}")


@contextmanager
def upload_progress(*, enabled: bool) -> Iterator[ProgressCallback | None]:
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("uploading", total=None)

        def advance(sent: int, total: int) -> None:
            # After the last byte the server loads and checks the model before it answers.
            step = "checking on the server" if sent >= total else "uploading"
            bar.update(task, completed=sent, total=total, description=step)

        yield advance


def _json_object(raw: str | None, option: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint=option) from None
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object", param_hint=option)
    return value


def _tags(pairs: list[str]) -> dict[str, str]:
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"'{pair}' is not KEY=VALUE", param_hint="--tag")
        tags[key] = value
    return tags
