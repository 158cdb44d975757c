"""``modelbay serve`` and ``modelbay demo``: run the platform in this process."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

console = Console(stderr=True)
STARTUP_FAILURE = 3
"""uvicorn's exit status when the server could not start."""

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
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=256,
        help="Frontend processes serving the same ports (default: the number of cores) "
        "[env MODELBAY_WORKERS]",
    ),
]
JobWorkersOpt = Annotated[
    int | None,
    typer.Option(
        min=0,
        max=64,
        help="Training job workers to run beside the frontends (0: none; run `modelbay "
        "worker` elsewhere) [env MODELBAY_JOB_WORKERS]",
    ),
]
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
    app.command(help="Run a training job worker on a server's database and store.")(worker)


def serve(
    host: HostOpt = None,
    port: PortOpt = None,
    grpc_port: GrpcPortOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
    log_level: LogOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    workers: WorkersOpt = None,
    job_workers: JobWorkersOpt = None,
) -> None:
    settings = _settings(
        job_workers=job_workers,
        workers=workers,
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


def worker(
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
    log_level: LogOpt = None,
    job_threads: Annotated[
        int | None,
        typer.Option(min=1, help="Threads of each training process [env MODELBAY_JOB_THREADS]"),
    ] = None,
    parent: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Claim queued training jobs and run them, one at a time, until stopped (SIGTERM or
    Ctrl-C gives a running job back to the queue; it resumes from its last checkpoint)."""
    settings = _settings(
        data_dir=data_dir, database_url=database_url, log_level=log_level, job_threads=job_threads
    )
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if parent is not None:
        from modelbay.jobs.lifetime import die_with_parent

        die_with_parent(parent)
    from modelbay.jobs.worker import main

    main(settings)


def demo(
    host: HostOpt = None,
    port: PortOpt = None,
    data_dir: Annotated[Path, typer.Option(help="Where the demo keeps its data")] = Path(
        "demo-data"
    ),
    log_level: LogOpt = None,
    workers: WorkersOpt = None,
) -> None:
    settings = _settings(
        host=host, port=port, data_dir=data_dir, log_level=log_level, workers=workers
    )
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
    from modelbay.api import create_app

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    app = create_app(settings)
    from modelbay.jobs.embedded import EmbeddedWorkers

    job_workers = EmbeddedWorkers(settings)
    job_workers.start()
    try:
        _serve(app, settings, demo=demo)
    finally:
        job_workers.stop()


def _serve(app: Any, settings: Any, *, demo: bool) -> None:
    import uvicorn

    from modelbay.api import edge_of

    if demo:
        from modelbay.demo import (
            install_demo_deployment,
            install_demo_models,
            install_llm_demo_models,
        )

        with console.status("building demo models from scikit-learn's digits data..."):
            pushed = install_demo_models(app.state.ctx.catalog)
        with console.status("registering the demo LLM and embedding model..."):
            pushed += install_llm_demo_models(app.state.ctx.catalog)
        if pushed:
            console.print(f"[green]registered demo models:[/] {', '.join(pushed)}")
        if install_demo_deployment(app.state.ctx.deployments):
            console.print("[green]deployed[/] digits-cnn-onnx@production (batching, 1-2 replicas)")
    url = f"{'https' if settings.tls_cert_file else 'http'}://{settings.host}:{settings.port}"
    tour = _tour(url, settings) if demo else _banner(url)
    if settings.workers > 1 and settings.replica_mode == "inprocess":
        # Replicas on threads of one frontend cannot be reached from the others.
        logging.getLogger("modelbay").warning("replica_mode inprocess: one frontend process")
    elif settings.workers > 1:
        app.state.release()  # the workers lead and follow; this process only supervises
        _run_workers(settings, tour)
        return
    # uvicorn's default context accepts TLS 1.2 and newer only; its banner then says https://.
    config = uvicorn.Config(edge_of(app), **_listening(settings))
    server = uvicorn.Server(config)
    threading.Thread(target=_print_when_up, args=(server, tour), daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def _listening(settings: Any) -> dict[str, Any]:
    """uvicorn's settings for where and how to listen, and what to log."""
    from modelbay.api import http_protocol

    return {
        "host": settings.host,
        "port": settings.port,
        "ssl_certfile": settings.tls_cert_file,
        "ssl_keyfile": settings.tls_key_file,
        "log_level": settings.log_level,
        "access_log": settings.log_level == "debug",
        "http": http_protocol.PROTOCOL,  # a response leaves in one write, not two
    }


def _run_workers(settings: Any, tour: str) -> None:
    """Run ``settings.workers`` frontend processes on one listening socket, restarted by
    uvicorn's supervisor if one dies. Their settings travel in the environment."""
    import shutil

    import uvicorn
    from pydantic import SecretStr
    from uvicorn.supervisors import Multiprocess

    from modelbay.serving.metrics import MULTIPROC_ENV

    metrics_dir = settings.data_dir / "run" / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, mode=0o700)
    os.environ[MULTIPROC_ENV] = str(metrics_dir)
    for name, value in settings.model_dump(exclude_none=True).items():
        if not isinstance(value, SecretStr):  # secrets come from the environment already
            os.environ[f"MODELBAY_{name.upper()}"] = str(value)
    config = uvicorn.Config(
        "modelbay.api.app:serve_app", factory=True, workers=settings.workers, **_listening(settings)
    )
    sock = config.bind_socket()
    url = f"{'https' if settings.tls_cert_file else 'http'}://{settings.host}:{settings.port}"
    threading.Thread(target=_print_when_ready, args=(url, tour), daemon=True).start()
    supervisor = Multiprocess(config, sockets=[sock])
    with contextlib.suppress(KeyboardInterrupt):
        supervisor.run()


def _print_when_ready(url: str, text: str) -> None:
    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per poll

    for _ in range(600):
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/v2/health/ready", verify=False, timeout=1).status_code == 200:
                console.print(text, soft_wrap=True, highlight=False)
                return
        time.sleep(0.2)


def _print_when_up(server: Any, text: str) -> None:
    """Print ``text`` once ``server`` (a ``uvicorn.Server``) accepts connections."""
    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.1)
    console.print(text, soft_wrap=True, highlight=False)


def _banner(url: str) -> str:
    """Where to go once the server is up (``modelbay serve``)."""
    from rich.markup import escape

    return escape(f"modelbay is up on {url}: web console {url}/ui/, API docs {url}/docs")


def _tour(url: str, settings: Any) -> str:
    """What to try once the demo is up, starting with the admin key to send."""
    from rich.markup import escape

    from modelbay.security.authn import ADMIN_KEY_FILE

    key_file = settings.data_dir / ADMIN_KEY_FILE
    needs = "Every call but the health checks needs an API key"
    if settings.admin_key is not None:
        where = f"{needs}; the admin key is MODELBAY_ADMIN_KEY."
        export = 'export MODELBAY_API_KEY="$MODELBAY_ADMIN_KEY"'
    elif key_file.exists():
        where = f"{needs}; the admin key is in {key_file}:"
        export = f"export MODELBAY_API_KEY=$(cat {shlex.quote(str(key_file))})"
    else:
        where = (
            f"{needs}. This data directory's admin key was shown when it was created, and\n"
            f"{key_file} is gone: restart with MODELBAY_ADMIN_KEY=<a secret of 16 or more\n"
            "characters> and send that secret."
        )
        export = "export MODELBAY_API_KEY=<the admin key>"
    auth = '-H "Authorization: Bearer $MODELBAY_API_KEY"'
    return escape(f"""
modelbay is up on {url}  (Ctrl-C stops it)

Web console: {url}/ui/  (sign in with the admin key)

{where}
Try, from another terminal in this directory:
  {export}
  curl -s {url}/v2/models/digits-logreg/infer {auth} \\
       -H 'Content-Type: application/json' -d @examples/digit-3.json
  .venv/bin/modelbay models list
  .venv/bin/modelbay predict digits-cnn@production --input examples/digit-3-image.json
  .venv/bin/modelbay models show digits-cnn
  .venv/bin/modelbay deployments list
  curl -s {url}/metrics {auth} | grep modelbay_batch_size
  .venv/bin/modelbay chat smol
  curl -s {url}/v1/chat/completions {auth} -H 'Content-Type: application/json' \\
       -d '{{"model": "smol", "messages": [{{"role": "user", "content": "Hi!"}}]}}'

API docs: {url}/docs
""")
