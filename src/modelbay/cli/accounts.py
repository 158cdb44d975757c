"""``modelbay accounts ...``: a tenant's users and service accounts, which keys act for."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.text import Text

from modelbay.cli import _render as render
from modelbay.cli._session import JsonOpt, connect, console, echo_json
from modelbay.client import Client

app = typer.Typer(
    help="Create, list and disable users and service accounts (owner keys).",
    no_args_is_help=True,
)


class Kind(StrEnum):
    USER = "user"
    SERVICE = "service"


NameArg = Annotated[str, typer.Argument(help="Account name, e.g. an e-mail address")]
TenantOpt = Annotated[str | None, typer.Option(help="Tenant (default: your key's)")]


@app.command()
def create(
    ctx: typer.Context,
    name: NameArg,
    kind: Annotated[Kind, typer.Option(help="A person, or a service")] = Kind.USER,
    tenant: TenantOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an account; then `modelbay keys create --account NAME` gives it keys."""
    with connect(ctx) as client:
        record = client.create_account(_tenant(client, tenant), name, kind.value)
    if as_json:
        echo_json(record)
    else:
        console.print(Text(f"created {record['kind']} account {name} in {record['tenant']}"))


@app.command("list")
def list_accounts(ctx: typer.Context, tenant: TenantOpt = None, as_json: JsonOpt = False) -> None:
    """List a tenant's accounts and how many active keys each has."""
    with connect(ctx) as client:
        accounts = client.list_accounts(_tenant(client, tenant))
    if as_json:
        echo_json(accounts)
    else:
        console.print(render.accounts_table(accounts))


@app.command()
def disable(
    ctx: typer.Context, name: NameArg, tenant: TenantOpt = None, as_json: JsonOpt = False
) -> None:
    """Disable an account and revoke all its keys at once."""
    with connect(ctx) as client:
        record = client.disable_account(_tenant(client, tenant), name)
    if as_json:
        echo_json(record)
    else:
        console.print(Text(f"disabled account {name}; its keys are revoked"))


def _tenant(client: Client, tenant: str | None) -> str:
    return tenant if tenant is not None else str(client.whoami()["tenant"])
