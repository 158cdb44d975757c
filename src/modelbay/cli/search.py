"""``modelbay search``: a hyperparameter search as a job, its best trial registered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from modelbay.cli._session import JsonOpt, connect, fail
from modelbay.cli.jobs import queued


def register(root: typer.Typer) -> None:
    root.command()(search)


def search(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="Dataset to train on (NAME or NAME:VERSION)")],
    family: Annotated[
        str,
        typer.Option(
            help="Family, or families separated by commas (a dimension of the search; the "
            "first is the baseline's and names the model)"
        ),
    ],
    target: Annotated[
        str, typer.Option(help="Column to predict ('label' for an image dataset)")
    ] = "label",
    trials: Annotated[int, typer.Option(min=1, max=1000, help="Trials to run")] = 20,
    space: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help='JSON file: {"lr": {"low": 1e-4, "high": 0.1, "log": true}, "batch_size": '
            "[16, 32, 64], ...}; default: the families' own space",
        ),
    ] = None,
    parallel: Annotated[
        int | None, typer.Option(min=1, max=64, help="Trials at once (default: job workers)")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="KEY=VALUE fixed in every trial, repeatable"),
    ] = None,
    pruner: Annotated[
        str | None, typer.Option(help="median (default), percentile, halving or none")
    ] = None,
    pruner_param: Annotated[
        list[str] | None,
        typer.Option(
            help="KEY=VALUE of the pruner, repeatable: startup_trials, warmup_epochs, "
            "percentile, min_epochs, reduction_factor"
        ),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="The sampler's seed")] = 0,
    baseline: Annotated[
        bool, typer.Option(help="Trial 0 trains the family's defaults (when in the space)")
    ] = True,
    name: Annotated[
        str | None, typer.Option(help="Model to register (default DATASET-FAMILY)")
    ] = None,
    deploy: Annotated[bool, typer.Option(help="Deploy the best trial's version")] = False,
    wait: Annotated[
        bool, typer.Option(help="Follow the search until it ends; exit 0 only if it succeeded")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Search hyperparameters: TRIALS trainings of FAMILY on DATASET, pruned early when
    they fall behind; the best one is registered as a version of the model."""
    from modelbay.jobs.submit import parse_params

    try:
        params = parse_params(param or [])
        pruning: dict[str, Any] = dict(parse_params(pruner_param or []))
    except Exception as exc:  # InvalidRequest
        fail(str(exc))
    if pruner is not None:
        pruning["kind"] = pruner
    families = [f.strip() for f in family.split(",") if f.strip()]
    if not families:
        fail("--family: give at least one family")
    base, _, version = dataset.partition(":")
    if version and not version.isdigit():
        fail(f"--dataset '{dataset}': the version after ':' must be a number")
    with connect(ctx) as client:
        job = client.search(
            base,
            families,
            target,
            trials=trials,
            space=_read_space(space) if space else None,
            params=params,
            parallel=parallel,
            pruner=pruning or None,
            seed=seed,
            baseline=baseline,
            name=name,
            deploy=deploy,
            dataset_version=int(version) if version else None,
        )
        doing = f"{trials} trials of {', '.join(families)} on {base}"
        queued(client, job, f"search {job['id']}", doing, wait, as_json)


def _read_space(path: Path) -> dict[str, Any]:
    try:
        space = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(f"--space '{path}': not a JSON file ({exc})")
    if not isinstance(space, dict):
        fail(f"--space '{path}': the space is a JSON object of hyperparameters")
    return space
