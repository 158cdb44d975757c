"""``modelbay serve`` and ``modelbay demo``: run the platform in this process."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

console = Console(stderr=True)

HostOpt = Annotated[str | None, typer.Option(help="Interface to bind [env MODELBAY_HOST]")]
PortOpt = Annotated[int | None, typer.Option(help="HTTP port [env MODELBAY_PORT]")]
GrpcPortOpt = Annotated[
    int | None, typer.Option(help="V2 gRPC port; 0 disables gRPC [env MODELBAY_GRPC_PORT]")
]
DataDirOpt = Annotated[
    Path | None, typer.Option(help="Registry and artifact directory [env MODELBAY_DATA_DIR]")
]
DbOpt = Annotated[
    str | None, typer.Option(help="SQLAlchemy URL of the registry [env MODELBAY_DATABASE_URL]")
]
LogOpt = Annotated[str | None, typer.Option(help="debug, info, warning, error")]
TlsCertOpt = Annotated[
    Path | None,
    typer.Option(
        "--tls-cert",
        help="PEM certificate chain; with --tls-key, HTTP and gRPC serve TLS only "
        "[env MODELBAY_TLS_CERT_FILE]",
    ),
]
TlsKeyOpt = Annotated[
    Path | None,
    typer.Option("--tls-key", help="PEM private key of --tls-cert [env MODELBAY_TLS_KEY_FILE]"),
]


def register(app: typer.Typer) -> None:
    """Add the commands that run a server to the root CLI."""
    app.command(help="Run the modelbay server.")(serve)
    app.command(help="Run the server with demo models built from scikit-learn's digits.")(demo)


def serve(
    host: HostOpt = None,
    port: PortOpt = None,
    grpc_port: GrpcPortOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
    log_level: LogOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
) -> None:
    settings = _settings(
        host=host,
        port=port,
        grpc_port=grpc_port,
        data_dir=data_dir,
        database_url=database_url,
        log_level=log_level,
        tls_cert_file=tls_cert,
        tls_key_file=tls_key,
    )
    _run(settings, demo=False)


def demo(
    host: HostOpt = None,
    port: PortOpt = None,
    data_dir: Annotated[Path, typer.Option(help="Where the demo keeps its data")] = Path(
        "demo-data"
    ),
    log_level: LogOpt = None,
) -> None:
    settings = _settings(host=host, port=port, data_dir=data_dir, log_level=log_level)
    _run(settings, demo=True)


def _settings(**overrides: Any) -> Any:
    from pydantic import ValidationError

    from modelbay.cli._session import fail
    from modelbay.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        fail(f"invalid settings: {'; '.join(_problem(e) for e in exc.errors())}", code=2)


def _problem(error: ErrorDetails) -> str:
    message = error["msg"].removeprefix("Value error, ")
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {message}" if where else message


def _run(settings: Any, *, demo: bool) -> None:
    # gRPC's C core logs every fork (replicas are spawned processes); keep its errors only.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    import uvicorn

    from modelbay.api import create_app

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    app = create_app(settings)
    if demo:
        from modelbay.demo import install_demo_deployment, install_demo_models

        with console.status("building demo models from scikit-learn's digits data..."):
            pushed = install_demo_models(app.state.ctx.catalog)
        if pushed:
            console.print(f"[green]registered demo models:[/] {', '.join(pushed)}")
        if install_demo_deployment(app.state.ctx.deployments):
            console.print("[green]deployed[/] digits-cnn-onnx@production (batching, 1-2 replicas)")
        scheme = "https" if settings.tls_cert_file else "http"
        _print_tour(f"{scheme}://{settings.host}:{settings.port}")
    # uvicorn's default context accepts TLS 1.2 and newer only; its banner then says https://.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        ssl_certfile=settings.tls_cert_file,
        ssl_keyfile=settings.tls_key_file,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
    )


def _print_tour(url: str) -> None:
    tour = f"""
[bold]modelbay is starting on {url}[/]  (Ctrl-C stops it)

Try, from another terminal in this directory:
  curl -s {url}/v2/models/digits-logreg/infer -H 'Content-Type: application/json' \\
       -d @examples/digit-3.json
  .venv/bin/modelbay models list
  .venv/bin/modelbay predict digits-cnn@production --input examples/digit-3-image.json
  .venv/bin/modelbay models show digits-cnn
  .venv/bin/modelbay deployments list
  curl -s {url}/metrics | grep modelbay_batch_size

API docs: {url}/docs
"""
    console.print(tour, soft_wrap=True, highlight=False)
