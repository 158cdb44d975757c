"""``modelbay usage``: requests, compute seconds and LLM tokens per API key and UTC day."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from modelbay.cli import _render as render
from modelbay.cli._session import JsonOpt, connect, console, echo_json

_DAY = {"formats": ["%Y-%m-%d"], "metavar": "YYYY-MM-DD"}


def register(root: typer.Typer) -> None:
    """Add ``usage`` to the root CLI."""
    root.command()(usage)


def usage(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (admin)")] = None,
    key: Annotated[
        str | None, typer.Option("--key", metavar="KEY_ID", help="Only this key")
    ] = None,
    since: Annotated[datetime | None, typer.Option(help="First UTC day", **_DAY)] = None,
    until: Annotated[datetime | None, typer.Option(help="Last UTC day", **_DAY)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show requests, compute seconds and LLM tokens per key and UTC day, with totals."""
    with connect(ctx) as client:
        rows = client.usage(
            tenant=tenant,
            key_id=key,
            since=since.date() if since else None,
            until=until.date() if until else None,
        )
    if as_json:
        echo_json(rows)
    elif not rows:
        console.print("no usage recorded for this selection")
    else:
        console.print(render.usage_table(rows))
