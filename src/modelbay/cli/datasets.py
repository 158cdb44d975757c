"""``modelbay datasets push|list|show|rm``: datasets to train on."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from modelbay.cli import _render_training as render
from modelbay.cli._session import JsonOpt, connect, console, echo_json, fail
from modelbay.cli.models import upload_progress

app = typer.Typer(help="Upload and inspect datasets to train on.", no_args_is_help=True)

SAMPLE_PREFIX = "sklearn:"


@app.command()
def push(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(
            help="A file (CSV, Parquet, .npz, image-folder .zip, CIFAR-10 .bin), or "
            "sklearn:NAME for a bundled sample (digits, iris, wine, breast_cancer, diabetes)"
        ),
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="Dataset to add the version to")],
    format: Annotated[
        str | None,
        typer.Option(help="csv, parquet, npz, images or cifar10 (default: from the file name)"),
    ] = None,
    description: Annotated[str, typer.Option(help="What this data is")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Upload SOURCE as a new version of a dataset (created if needed)."""
    from pathlib import Path

    sample = source[len(SAMPLE_PREFIX) :] if source.startswith(SAMPLE_PREFIX) else None
    if sample is None and not Path(source).is_file():
        fail(f"no file at '{source}' (a bundled sample is written sklearn:NAME)")
    with connect(ctx) as client, upload_progress(enabled=not as_json) as progress:
        record = client.push_dataset(
            name,
            None if sample else source,
            sample=sample,
            format=format,
            description=description,
            progress=progress,
        )
    if as_json:
        echo_json(record)
        return
    schema = record.get("schema") or {}
    console.print(
        Text.assemble(
            "pushed ",
            (f"{record['dataset']}", "bold"),
            f" version {record['version']}: {schema.get('rows', '?')} rows, "
            f"{record['format']}, sha256 {str(record['digest'])[:12]}",
        )
    )


@app.command("list")
def list_datasets(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List datasets with their newest version."""
    with connect(ctx) as client:
        datasets = client.list_datasets()
    if as_json:
        echo_json(datasets)
    elif not datasets:
        console.print("no datasets yet: push one with `modelbay datasets push FILE --name NAME`")
    else:
        console.print(render.datasets_table(datasets))


@app.command()
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name")],
    as_json: JsonOpt = False,
) -> None:
    """Show a dataset: schema, row count, class balance and column statistics."""
    with connect(ctx) as client:
        dataset = client.get_dataset(name)
    if as_json:
        echo_json(dataset)
        return
    console.print(render.dataset_grid(dataset))
    schema = (dataset.get("latest") or {}).get("schema") or {}
    if schema.get("columns"):
        console.print(render.columns_table(schema))
    for title, counts in render.class_balances(schema):
        console.print(render.balance_table(counts, title))


@app.command("rm")
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask")] = False,
) -> None:
    """Delete a dataset and all its versions."""
    if not yes:
        typer.confirm(f"delete dataset '{name}' and all its versions?", abort=True)
    with connect(ctx) as client:
        client.delete_dataset(name)
    console.print(f"deleted dataset {name}")
