"""``modelbay federated join|status``: take part in a federated job with one's own data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from modelbay.cli._session import JsonOpt, connect, console, echo_json, fail

app = typer.Typer(help="Take part in federated training jobs.", no_args_is_help=True)

JobArg = Annotated[int, typer.Argument(min=1, help="The federated job's id")]


@app.command()
def join(
    ctx: typer.Context,
    job: JobArg,
    data: Annotated[
        Path,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="This client's data: CSV, Parquet, .npz ... with the job's feature and "
            "target columns; it never leaves this machine",
        ),
    ],
    format: Annotated[
        str | None,
        typer.Option(help="csv, parquet, npz, images or cifar10 (default: from the file name)"),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="Threads of local training (default: torch's)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Join JOB and train its rounds on DATA until the job ends; exit 0 when it succeeded."""
    say = (lambda _: None) if as_json else (lambda line: console.print(Text(line)))
    with connect(ctx) as client:
        final = client.federate(job, data, format=format, threads=threads, progress=say)
    if as_json:
        echo_json(final)
    if final["stage"] != "done":
        fail(f"job {job} {final['job_state']}")


@app.command()
def status(ctx: typer.Context, job: JobArg, as_json: JsonOpt = False) -> None:
    """Show a federated job's stage, open round and clients."""
    with connect(ctx) as client:
        record = client.federation(job)
    if as_json:
        echo_json(record)
        return
    console.print(
        Text(
            f"job {job}: {record['stage']}, round {record['round']} of {record['rounds']}, "
            f"{record['joined']} of {record['clients']} clients joined ({record['active']} "
            f"active), {record['answered']} updates in this round"
        )
    )
