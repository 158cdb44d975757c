"""``modelbay deploy``, ``undeploy``, ``scale`` and ``modelbay deployments list|show``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Annotated, Any

import typer

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
from modelbay.client import ModelRef

app = typer.Typer(help="List and inspect deployments.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="Deployment (model) name")]


def register(root: typer.Typer) -> None:
    """Add ``deploy``, ``undeploy``, ``scale`` and the ``deployments`` group to the root CLI."""
    root.command()(deploy)
    root.command()(undeploy)
    root.command()(scale)
    root.add_typer(app, name="deployments")


def deploy(
    ctx: typer.Context,
    ref: Annotated[
        ModelRef,
        typer.Argument(
            parser=parse_ref,
            metavar=REF_METAVAR,
            help="NAME serves the latest version (following pushes), NAME:3 pins version 3, "
            "NAME@ALIAS follows the alias",
        ),
    ],
    min_replicas: Annotated[
        int | None, typer.Option(min=0, help="Replicas kept running (0: scale to zero)")
    ] = None,
    max_replicas: Annotated[int | None, typer.Option(min=1, help="Most replicas")] = None,
    max_batch_size: Annotated[
        int | None, typer.Option(min=1, help="Rows per batch (LLMs: sequences at once)")
    ] = None,
    max_queue_delay_ms: Annotated[
        float | None, typer.Option(min=0, help="How long a batch waits to fill")
    ] = None,
    queue_capacity: Annotated[
        int | None, typer.Option(min=1, help="Queued requests before 429")
    ] = None,
    request_timeout_ms: Annotated[
        float | None, typer.Option(help="Deadline of a request (> 0)")
    ] = None,
    threads_per_replica: Annotated[
        int | None, typer.Option(min=1, help="Compute threads of each replica")
    ] = None,
    kv_cache_mb: Annotated[
        int | None, typer.Option(min=1, help="LLMs: KV cache of each replica (MiB)")
    ] = None,
    max_model_len: Annotated[
        int | None, typer.Option(min=16, help="LLMs: prompt plus output, at most")
    ] = None,
    dtype: Annotated[str | None, typer.Option(help="LLMs: auto, float32 or bfloat16")] = None,
    quantization: Annotated[
        str | None, typer.Option(help="LLMs: none, or int8 (weight-only, per channel)")
    ] = None,
    canary: Annotated[
        str | None,
        typer.Option(metavar="VERSION|ALIAS", help="A second version to send a share of traffic"),
    ] = None,
    canary_weight: Annotated[
        int | None, typer.Option(min=0, max=100, metavar="PCT", help="Percent to the canary")
    ] = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Return without waiting for replicas")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Serve a model version with replicas, batching and admission control.

    Run again with other settings, it changes the deployment in place (a rolling update,
    no failed requests) and prints what changed; settings not given stay as they are.
    """
    if canary_weight is not None and canary is None:
        raise typer.BadParameter("needs --canary VERSION|ALIAS", param_hint="--canary-weight")
    config: dict[str, Any] = {
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
        "max_batch_size": max_batch_size,
        "max_queue_delay_ms": max_queue_delay_ms,
        "queue_capacity": queue_capacity,
        "request_timeout_ms": request_timeout_ms,
        "threads_per_replica": threads_per_replica,
        "kv_cache_mb": kv_cache_mb,
        "max_model_len": max_model_len,
        "dtype": dtype,
        "quantization": quantization,
    }
    target = "latest" if ref.version is None else ref.version
    with connect(ctx) as client, _spinner(ref, enabled=not (no_wait or as_json)):
        record, changes = client.apply_deployment(
            ref.name,
            target,
            canary_version=canary,
            canary_weight=canary_weight,
            wait=not no_wait,
            **config,
        )
    served = str(ref) if ref.version is not None else f"{ref.name} (latest, following pushes)"
    if changes is None:
        headline = f"{'deploying' if no_wait else 'deployed'} {served}"
    elif not changes:
        headline = f"{ref.name} is already deployed as asked; nothing changed"
    else:
        changed = ", ".join(f"{key} {before} → {after}" for key, (before, after) in changes.items())
        headline = f"{'updating' if no_wait else 'updated'} {ref.name}: {changed}"
    _print(record, as_json, headline)


def undeploy(ctx: typer.Context, name: NameArg) -> None:
    """Stop serving a model; requests already queued are answered first."""
    with connect(ctx) as client:
        client.undeploy(name)
    console.print(f"undeployed {name}")


def scale(
    ctx: typer.Context,
    name: NameArg,
    min_replicas: Annotated[
        int | None, typer.Option("--min", min=0, help="Replicas kept running (0: scale to zero)")
    ] = None,
    max_replicas: Annotated[int | None, typer.Option("--max", min=1, help="Most replicas")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change how many replicas a deployment may run; the autoscaler moves within the range."""
    if min_replicas is None and max_replicas is None:
        raise typer.BadParameter("give --min, --max or both")
    with connect(ctx) as client:
        record = client.scale(name, min_replicas=min_replicas, max_replicas=max_replicas)
    config = record["config"]
    _print(
        record, as_json, f"{name}: {config['min_replicas']} to {config['max_replicas']} replicas"
    )


@app.command("list")
def list_deployments(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List deployments with their replicas, batching and state."""
    with connect(ctx) as client:
        deployments = client.list_deployments()
    if as_json:
        echo_json(deployments)
    elif not deployments:
        console.print("no deployments yet: serve a model with `modelbay deploy NAME`")
    else:
        console.print(render.deployments_table(deployments))


@app.command()
def show(ctx: typer.Context, name: NameArg, as_json: JsonOpt = False) -> None:
    """Show a deployment's settings and what runs for each of its versions."""
    with connect(ctx) as client:
        record = client.get_deployment(name)
    if as_json:
        echo_json(record)
        return
    console.print(render.deployment_grid(record))
    console.print(render.deployment_versions_table(record["status"]))


def _print(record: dict[str, Any], as_json: bool, headline: str) -> None:
    if as_json:
        echo_json(record)
        return
    console.print(headline)
    console.print(render.deployments_table([record]))


@contextmanager
def _spinner(ref: ModelRef, *, enabled: bool) -> Iterator[None]:
    waiting = f"waiting for replicas of {ref} to serve"
    with err_console.status(waiting) if enabled else nullcontext():
        yield
