"""``modelbay audit list|verify``: read and check the hash-chained audit log."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from modelbay.cli._session import JsonOpt, connect, console, echo_json, fail

app = typer.Typer(help="Read and verify the audit log.", no_args_is_help=True)


@app.command("list")
def list_events(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many events")] = 50,
    before: Annotated[int | None, typer.Option(help="Page back from this seq")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show audit events, newest first: when, who, what, target, result, from where."""
    with connect(ctx) as client:
        events = client.audit_events(limit=limit, before=before)
    if as_json:
        echo_json(events)
        return
    table = Table("seq", "at", "actor", "action", "target", "result", "client", title="audit")
    for e in events:
        target = ", ".join(f"{k}={v}" for k, v in e["target"].items()) or "-"
        table.add_row(
            str(e["seq"]),
            str(e["at"])[:19],
            e["actor"],
            e["action"],
            target,
            str(e["result"]),
            e["client"] or "-",
        )
    console.print(table)


@app.command()
def verify(ctx: typer.Context) -> None:
    """Recompute the hash chain; exit 1 naming the first altered or missing event."""
    with connect(ctx) as client:
        report = client.verify_audit()
    if not report["ok"]:
        fail(f"audit log broken at event {report['first_bad_seq']}: {report['reason']}")
    console.print(f"audit log intact: {report['checked']} events verified")
