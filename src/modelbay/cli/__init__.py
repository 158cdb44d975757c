"""The ``modelbay`` command line: ``serve``/``demo``/``worker``, models, ``predict``,
deployments, datasets and training jobs, access."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelbay.cli import (
    accounts,
    admin,
    audit,
    chat,
    datasets,
    deployments,
    federated,
    jobs,
    keys,
    models,
    predict,
    search,
    tenants,
    usage,
)
from modelbay.cli._session import Connection
from modelbay.cli.server import register as register_server
from modelbay.client import DEFAULT_URL

app = typer.Typer(
    name="modelbay",
    help="Self-hosted Model-as-a-Service: versioned, secure, fast model endpoints.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option(envvar="MODELBAY_URL", help="URL of the modelbay server")
    ] = DEFAULT_URL,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="MODELBAY_API_KEY", help="API key sent as a Bearer token"),
    ] = None,
    ca_cert: Annotated[
        Path | None,
        typer.Option(
            envvar="MODELBAY_CA_CERT",
            exists=True,
            dir_okay=False,
            help="PEM CA bundle that signs the server's TLS certificate (https:// URLs)",
        ),
    ] = None,
) -> None:
    ctx.obj = Connection(url, api_key, ca_cert)


register_server(app)
app.add_typer(models.app, name="models")
app.add_typer(admin.app, name="admin")
app.add_typer(audit.app, name="audit")
predict.register(app)
chat.register(app)
deployments.register(app)
app.add_typer(tenants.app, name="tenants")
app.add_typer(accounts.app, name="accounts")
keys.register(app)
usage.register(app)
app.add_typer(datasets.app, name="datasets")
jobs.register(app)
app.add_typer(federated.app, name="federated")
search.register(app)


def main() -> None:
    """Entry point of the ``modelbay`` console script."""
    app(prog_name="modelbay")
