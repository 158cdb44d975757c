"""What every client command shares: the server to talk to, error reporting, references."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from modelbay.client import DEFAULT_URL, Client, ModelRef
from modelbay.errors import ModelbayError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

REF_METAVAR = "NAME[:VERSION|@ALIAS]"

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the server's JSON instead.")]


@dataclass(frozen=True)
class Connection:
    """The root options ``--url``, ``--api-key`` and ``--ca-cert``, kept on ``ctx.obj``."""

    url: str = DEFAULT_URL
    api_key: str | None = None
    ca_cert: Path | None = None


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` in red on stderr and exit with ``code``."""
    err_console.print(Text(f"error: {message}", style="red"), soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn errors a user can cause (server answers, files) into ``error:`` lines, exit 1."""
    try:
        yield
    except ModelbayError as exc:
        fail(exc.message)
    except OSError as exc:
        fail(str(exc))


@contextmanager
def connect(ctx: typer.Context) -> Iterator[Client]:
    """A ``Client`` for the root options; errors inside the block end the command cleanly."""
    conn = ctx.obj if isinstance(ctx.obj, Connection) else Connection()
    verify = str(conn.ca_cert) if conn.ca_cert else True
    with reported_errors(), Client(conn.url, conn.api_key, verify=verify) as client:
        yield client


def parse_ref(text: str) -> ModelRef:
    """Typer parser of ``NAME``, ``NAME:VERSION`` and ``NAME@ALIAS`` (usage error if bad)."""
    try:
        return ModelRef.parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def echo_json(value: Any, *, indent: int | None = 2) -> None:
    """Machine output: ``value`` as JSON on stdout (one line when ``indent`` is None)."""
    typer.echo(json.dumps(value, indent=indent, default=str))
