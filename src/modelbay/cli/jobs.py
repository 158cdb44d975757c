"""``modelbay train`` and ``modelbay jobs list|show|logs|cancel``: training as a service
(``modelbay search``, in ``search.py``, follows and shows its jobs with ``follow`` and
``summary``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from modelbay.cli import _render_search as render_search
from modelbay.cli import _render_training as render
from modelbay.cli._session import JsonOpt, connect, console, echo_json, err_console, fail
from modelbay.client import Client

app = typer.Typer(help="Follow, inspect and cancel training jobs.", no_args_is_help=True)

JobArg = Annotated[int, typer.Argument(min=1, help="Job id")]


def register(root: typer.Typer) -> None:
    """Add ``train`` and the ``jobs`` group to the root CLI."""
    root.command()(train)
    root.add_typer(app, name="jobs")


def train(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="Dataset to train on (NAME or NAME:VERSION)")],
    family: Annotated[
        str,
        typer.Option(
            help="linear, logistic, perceptron, mlp, cnn, resnet, rnn, lstm or gru",
        ),
    ],
    target: Annotated[
        str, typer.Option(help="Column to predict ('label' for an image dataset)")
    ] = "label",
    name: Annotated[
        str | None, typer.Option(help="Model to register (default DATASET-FAMILY)")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="KEY=VALUE hyperparameter, repeatable: optimizer, lr, lr_schedule, "
            "batch_size (full, 1, N), epochs, weight_decay, l1, dropout, early_stopping, "
            "validation_split, class_weights, seed, hidden ...",
        ),
    ] = None,
    strategy: Annotated[
        str | None,
        typer.Option(
            help="single (default), ddp (data-parallel), average (model averaging), ensemble "
            "or federated"
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Processes of a ddp, average or ensemble job")
    ] = None,
    clients: Annotated[int | None, typer.Option(help="Clients of a federated job")] = None,
    simulate: Annotated[
        bool,
        typer.Option(
            "--simulate", help="Federated: simulate the clients on partitions of the dataset"
        ),
    ] = False,
    partition: Annotated[
        str | None, typer.Option(help="Simulated federated clients' data: iid or label")
    ] = None,
    deploy: Annotated[bool, typer.Option(help="Deploy the new version when it is ready")] = False,
    wait: Annotated[
        bool, typer.Option(help="Follow the job until it ends; exit 0 only if it succeeded")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Queue a training job: a model FAMILY trained on DATASET to predict TARGET."""
    from modelbay.jobs.submit import parse_params

    try:
        params: dict[str, object] = dict(parse_params(param or []))
    except Exception as exc:  # InvalidRequest
        fail(str(exc))
    options = {"strategy": strategy, "workers": workers, "clients": clients}
    options["partition"] = partition
    params.update({key: value for key, value in options.items() if value is not None})
    if simulate:
        params["simulate"] = True
    base, _, version = dataset.partition(":")
    if version and not version.isdigit():
        fail(f"--dataset '{dataset}': the version after ':' must be a number")
    with connect(ctx) as client:
        job = client.train(
            base,
            family,
            target,
            params=params,
            name=name,
            deploy=deploy,
            dataset_version=int(version) if version else None,
        )
        queued(client, job, f"job {job['id']}", f"{family} on {base}", wait, as_json)


def queued(
    client: Client, job: dict[str, Any], what: str, doing: str, wait: bool, as_json: bool
) -> None:
    """Say that ``job`` (``what``: "job 7") is queued; with ``wait``, follow it to its end
    and exit 0 only if it succeeded."""
    if not wait:
        if as_json:
            echo_json(job)
        else:
            console.print(
                f"{what} queued: {doing} -> model {job['model']}; "
                f"follow it with `modelbay jobs logs {job['id']} -f`"
            )
        return
    if not as_json:
        console.print(f"{what} queued")
    final = follow(client, job["id"], quiet=as_json)
    if as_json:
        echo_json(final)
    else:
        summary(client, final)
    raise typer.Exit(0 if final["state"] == "succeeded" else 1)


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    state: Annotated[
        str | None, typer.Option(help="queued, running, succeeded, failed or cancelled")
    ] = None,
    parent: Annotated[
        int | None, typer.Option(min=1, help="Only the trials of this search")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List jobs, newest first (a search's trials say whose they are)."""
    with connect(ctx) as client:
        jobs = client.list_jobs(state, parent=parent)
    if as_json:
        echo_json(jobs)
    elif not jobs:
        console.print("no jobs yet: start one with `modelbay train --dataset D --family F ...`")
    else:
        console.print(render.jobs_table(jobs))


@app.command()
def show(ctx: typer.Context, job: JobArg, as_json: JsonOpt = False) -> None:
    """Show a job: state, hyperparameters, metrics and the model it registered; a search:
    its space, its trials, the best one and the parameters' importances."""
    with connect(ctx) as client:
        record = client.get_job(job)
        if as_json:
            echo_json(record)
            return
        summary(client, record)


@app.command()
def logs(
    ctx: typer.Context,
    job: JobArg,
    follow_: Annotated[
        bool, typer.Option("--follow", "-f", help="Stream new epochs and logs until it ends")
    ] = False,
) -> None:
    """Print a job's history (states, epochs' metrics, logs); -f follows it live."""
    with connect(ctx) as client:
        if follow_:
            final = follow(client, job, quiet=False)
            summary(client, final)
            return
        for event in client.job_events(job):
            console.print(_event_line(event))


@app.command()
def cancel(ctx: typer.Context, job: JobArg, as_json: JsonOpt = False) -> None:
    """Cancel a job: a queued one at once, a running one within a batch."""
    with connect(ctx) as client:
        record = client.cancel_job(job)
    if as_json:
        echo_json(record)
    elif record["state"] == "cancelled":
        console.print(f"job {job} cancelled")
    else:
        console.print(f"job {job}: cancellation requested; it stops within a batch")


def follow(client: Client, job: int, *, quiet: bool) -> dict[str, Any]:
    """Show a progress bar of epochs (a search's: of trials) and each epoch's metrics until
    the job ends; the finished job."""
    record = client.get_job(job)
    spec = record.get("spec") or {}
    epochs = spec.get("trials" if record.get("kind") == "search" else "epochs")
    if spec.get("strategy") == "federated":
        epochs = spec.get("rounds")
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=True, disable=quiet) as bar:
        task = bar.add_task(f"job {job}", total=epochs)
        for event in client.follow_job(job):
            if event.get("kind") == "end":
                final: dict[str, Any] = event["data"]
                return final
            if event.get("kind") == "metric":
                bar.update(task, completed=event["data"].get("epoch", 0))
            if not quiet:
                bar.console.print(_event_line(event))
    return client.get_job(job)


def _event_line(event: dict[str, Any]) -> Text:
    """One line per event; plain text, never read as rich markup."""
    data = event.get("data") or {}
    kind = event.get("kind")
    if kind == "metric":
        return Text(render.epoch_line(data))
    if kind == "state":
        extra = {k: v for k, v in data.items() if k != "state"}
        detail = ", ".join(f"{k} {v}" for k, v in extra.items())
        state = str(data.get("state"))
        return Text.assemble(render.state_text(state), f": {detail}" if detail else "")
    return Text(str(data.get("message", data)))


def summary(client: Client, record: dict[str, Any]) -> None:
    if record.get("kind") == "search":
        _search_summary(client, record)
        return
    console.print(render.job_grid(record))
    metrics = {k: v for k, v in (record.get("metrics") or {}).items()}
    if metrics:
        console.print(render.metrics_table(metrics))


def _search_summary(client: Client, record: dict[str, Any]) -> None:
    spec = record.get("spec") or {}
    metric = str(spec.get("metric", "value"))
    console.print(render_search.search_grid(record))
    console.print(render_search.space_table(spec))
    children = client.list_jobs(parent=record["id"], limit=1000)
    rows = render_search.trial_rows(record, children)
    if rows:
        console.print(render_search.trials_table(rows, metric))
    console.print(render_search.best_line(rows, metric, record["state"] == "succeeded"))
    found = (record.get("result") or {}).get("search") or {}
    if found.get("importances"):
        console.print(render_search.importances_table(found["importances"]))
    elif record["state"] == "succeeded":
        console.print("parameter importances: too few complete trials to tell")
    tested = {k: v for k, v in (record.get("metrics") or {}).items() if k.startswith("test_")}
    if tested:
        console.print(
            render.metrics_table(tested, title="the best trial's model on the test split")
        )
