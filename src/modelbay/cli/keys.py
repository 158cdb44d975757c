"""``modelbay keys ...`` and ``modelbay whoami``: API keys and the key the CLI uses."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from modelbay.cli import _render as render
from modelbay.cli._session import JsonOpt, connect, console, echo_json
from modelbay.security.principals import Role, Scope

app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)

KeyArg = Annotated[str, typer.Argument(metavar="KEY_ID_OR_SECRET", help="The key's id or secret")]


def register(root: typer.Typer) -> None:
    """Add the ``keys`` group and ``whoami`` to the root CLI."""
    root.add_typer(app, name="keys")
    root.command()(whoami)


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", "-n", help="What the key is for")],
    role: Annotated[Role, typer.Option(help="What the key may do")],
    tenant: Annotated[str | None, typer.Option(help="Tenant of the key (default: yours)")] = None,
    account: Annotated[
        str | None, typer.Option(help="The tenant's user or service account it acts for")
    ] = None,
    scope: Annotated[
        list[Scope] | None, typer.Option("--scope", help="Narrow the role to this, repeatable")
    ] = None,
    rate_limit: Annotated[
        float | None, typer.Option("--rate-limit", metavar="RPS", help="Requests per second")
    ] = None,
    daily_quota: Annotated[
        int | None, typer.Option("--daily-quota", metavar="N", help="Requests per UTC day")
    ] = None,
    tokens_per_minute: Annotated[
        int | None,
        typer.Option("--tokens-per-minute", metavar="N", help="LLM tokens per minute"),
    ] = None,
    tokens_per_day: Annotated[
        int | None, typer.Option("--tokens-per-day", metavar="N", help="LLM tokens per UTC day")
    ] = None,
    expires: Annotated[
        str | None,
        typer.Option(metavar="DURATION", help="Lifetime: 30m, 12h, 90d, 4w (default: never)"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key and print its secret, which cannot be shown again."""
    with connect(ctx) as client:
        record = client.create_key(
            name,
            role,
            tenant=tenant,
            scopes=scope,
            rate_limit_rps=rate_limit,
            daily_quota=daily_quota,
            expires_in=expires,
            account=account,
            tokens_per_minute=tokens_per_minute,
            tokens_per_day=tokens_per_day,
        )
    if as_json:
        echo_json(record)
        return
    console.print(f"created key {record['key_id']}")
    console.print(render.key_grid(record))
    console.print()
    console.print(Text(record["secret"], style="bold green"), soft_wrap=True)
    console.print()
    console.print(
        Text("Store this secret now: it is shown only once and cannot be recovered.", "yellow")
    )


@app.command("list")
def list_keys(
    ctx: typer.Context,
    tenant: Annotated[
        str | None, typer.Option(help="Only this tenant's keys (admin; default: all you see)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List API keys with their tenant, role, status, expiry and limits."""
    with connect(ctx) as client:
        keys = client.list_keys(tenant)
    if as_json:
        echo_json(keys)
    elif not keys:
        console.print("no keys: create one with `modelbay keys create --name N --role R`")
    else:
        console.print(render.keys_table(keys))


@app.command()
def show(ctx: typer.Context, key: KeyArg, as_json: JsonOpt = False) -> None:
    """Show an API key's tenant, role, scopes, limits and status."""
    with connect(ctx) as client:
        record = client.get_key(key)
    if as_json:
        echo_json(record)
    else:
        console.print(render.key_grid(record))


@app.command()
def revoke(ctx: typer.Context, key: KeyArg, as_json: JsonOpt = False) -> None:
    """Revoke an API key at once; requests with it are refused from then on."""
    with connect(ctx) as client:
        record = client.revoke_key(key)
    if as_json:
        echo_json(record)
        return
    console.print(
        Text(f"revoked key {record['key_id']} ({record['name']}) of tenant {record['tenant']}")
    )


def whoami(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Show the key the CLI uses: its id, name, tenant, role and scopes."""
    with connect(ctx) as client:
        identity = client.whoami()
    if as_json:
        echo_json(identity)
    else:
        console.print(render.whoami_grid(identity))
