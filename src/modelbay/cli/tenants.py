"""``modelbay tenants ...``: create tenants and set their rate limits and quotas."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from modelbay.cli import _render as render
from modelbay.cli._session import JsonOpt, connect, console, echo_json

app = typer.Typer(help="Create tenants and set their limits (admin keys).", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="Tenant name")]
RateOpt = Annotated[
    float | None,
    typer.Option("--rate-limit", metavar="RPS", help="Requests per second, over all its keys"),
]
QuotaOpt = Annotated[
    int | None,
    typer.Option("--daily-quota", metavar="N", help="Requests per UTC day, over all its keys"),
]
TokensPerMinuteOpt = Annotated[
    int | None,
    typer.Option(
        "--tokens-per-minute", metavar="N", help="LLM tokens per minute, over all its keys"
    ),
]
TokensPerDayOpt = Annotated[
    int | None,
    typer.Option("--tokens-per-day", metavar="N", help="LLM tokens per UTC day, over all its keys"),
]
MaxJobsOpt = Annotated[
    int | None,
    typer.Option("--max-jobs", metavar="N", min=1, help="Training jobs queued or running at once"),
]
TrainingSecondsOpt = Annotated[
    float | None,
    typer.Option(
        "--training-seconds-per-day",
        metavar="S",
        min=0.001,
        help="CPU seconds of training per UTC day, over all its keys",
    ),
]


@app.command()
def create(
    ctx: typer.Context,
    name: NameArg,
    rate_limit: RateOpt = None,
    daily_quota: QuotaOpt = None,
    tokens_per_minute: TokensPerMinuteOpt = None,
    tokens_per_day: TokensPerDayOpt = None,
    max_jobs: MaxJobsOpt = None,
    training_seconds_per_day: TrainingSecondsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a tenant, unlimited but for the limits given."""
    with connect(ctx) as client:
        record = client.create_tenant(
            name,
            rate_limit_rps=rate_limit,
            daily_quota=daily_quota,
            tokens_per_minute=tokens_per_minute,
            tokens_per_day=tokens_per_day,
            max_jobs=max_jobs,
            training_seconds_per_day=training_seconds_per_day,
        )
    _print(record, as_json, f"created tenant {name}")


@app.command("list")
def list_tenants(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List tenants with their limits."""
    with connect(ctx) as client:
        tenants = client.list_tenants()
    if as_json:
        echo_json(tenants)
    else:
        console.print(render.tenants_table(tenants))


@app.command()
def show(ctx: typer.Context, name: NameArg, as_json: JsonOpt = False) -> None:
    """Show a tenant's limits."""
    with connect(ctx) as client:
        record = client.get_tenant(name)
    _print(record, as_json, None)


@app.command()
def update(
    ctx: typer.Context,
    name: NameArg,
    rate_limit: RateOpt = None,
    no_rate_limit: Annotated[
        bool, typer.Option("--no-rate-limit", help="Remove the rate limit")
    ] = False,
    daily_quota: QuotaOpt = None,
    no_daily_quota: Annotated[
        bool, typer.Option("--no-daily-quota", help="Remove the daily quota")
    ] = False,
    tokens_per_minute: TokensPerMinuteOpt = None,
    no_tokens_per_minute: Annotated[
        bool, typer.Option("--no-tokens-per-minute", help="Remove the tokens per minute limit")
    ] = False,
    tokens_per_day: TokensPerDayOpt = None,
    no_tokens_per_day: Annotated[
        bool, typer.Option("--no-tokens-per-day", help="Remove the tokens per day limit")
    ] = False,
    max_jobs: MaxJobsOpt = None,
    no_max_jobs: Annotated[
        bool, typer.Option("--no-max-jobs", help="Remove the limit of jobs at once")
    ] = False,
    training_seconds_per_day: TrainingSecondsOpt = None,
    no_training_seconds_per_day: Annotated[
        bool,
        typer.Option("--no-training-seconds-per-day", help="Remove the training time limit"),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Change a tenant's limits; a limit not named stays as it is."""
    limits = {
        **_limit("rate_limit_rps", rate_limit, no_rate_limit, "--rate-limit"),
        **_limit("daily_quota", daily_quota, no_daily_quota, "--daily-quota"),
        **_limit(
            "tokens_per_minute", tokens_per_minute, no_tokens_per_minute, "--tokens-per-minute"
        ),
        **_limit("tokens_per_day", tokens_per_day, no_tokens_per_day, "--tokens-per-day"),
        **_limit("max_jobs", max_jobs, no_max_jobs, "--max-jobs"),
        **_limit(
            "training_seconds_per_day",
            training_seconds_per_day,
            no_training_seconds_per_day,
            "--training-seconds-per-day",
        ),
    }
    if not limits:
        raise typer.BadParameter(
            "give a limit to set (--rate-limit, --daily-quota, --tokens-per-minute, "
            "--tokens-per-day, --max-jobs, --training-seconds-per-day) or to remove "
            "(--no-rate-limit, --no-daily-quota, --no-tokens-per-minute, --no-tokens-per-day, "
            "--no-max-jobs, --no-training-seconds-per-day)"
        )
    with connect(ctx) as client:
        record = client.update_tenant(name, **limits)
    _print(record, as_json, f"updated tenant {name}")


def _limit(field: str, value: float | None, remove: bool, option: str) -> dict[str, Any]:
    if value is not None and remove:
        raise typer.BadParameter(f"give {option} or --no-{option[2:]}, not both")
    if remove:
        return {field: None}
    return {} if value is None else {field: value}


def _print(record: dict[str, Any], as_json: bool, headline: str | None) -> None:
    if as_json:
        echo_json(record)
        return
    if headline:
        console.print(headline)
    console.print(render.tenants_table([record]))
