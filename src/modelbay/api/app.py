"""The composition root: ``create_app(settings)`` wires every component once."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from starlette.types import ASGIApp

from modelbay import __version__
from modelbay.api import access as access_api
from modelbay.api import audit as audit_api
from modelbay.api import console as console_api
from modelbay.api import datasets as datasets_api
from modelbay.api import deployments as deployments_api
from modelbay.api import docs as docs_api
from modelbay.api import federated as federated_api
from modelbay.api import jobs as jobs_api
from modelbay.api import management, v2
from modelbay.api import metrics as metrics_api
from modelbay.api import openai as openai_api
from modelbay.api.audit import AuditTrail
from modelbay.api.auth import (
    Gatekeeper,
    authorize_route,
    document_security,
    unguarded_routes,
)
from modelbay.api.context import AppContext
from modelbay.api.errors import OpaqueServerErrors, install_error_handlers
from modelbay.api.grpc_server import STOP_GRACE_S, start_grpc_server
from modelbay.api.headers import SecurityHeaders
from modelbay.api.limits import BodyLimit
from modelbay.api.v2_infer import InferFastPath
from modelbay.catalog import Catalog
from modelbay.frontends.coordinator import Controller, Coordinator
from modelbay.frontends.epochs import Domain, SharedEpochs
from modelbay.frontends.follower import FollowerController
from modelbay.frontends.run import RunDir
from modelbay.frontends.shared_table import SharedTable
from modelbay.jobs.dataset_catalog import DatasetCatalog
from modelbay.registry import DeploymentConfig, DeploymentStore, Registry, make_engine, migrate
from modelbay.registry.datasets import DatasetStore
from modelbay.registry.jobs import JobStore
from modelbay.security.access import ResourceDirectory
from modelbay.security.accounts import AccountStore
from modelbay.security.audit import AuditLog
from modelbay.security.authn import Authenticator, bootstrap_admin
from modelbay.security.console_sessions import ConsoleSessions
from modelbay.security.guard import Guard
from modelbay.security.keys import KeyStore
from modelbay.security.limits import RateLimiter
from modelbay.security.policy import public_paths, rest_rules
from modelbay.security.refusals import RefusalThrottle
from modelbay.security.usage import UsageMeter
from modelbay.serving.controller import DeploymentController
from modelbay.serving.inference import InferenceService
from modelbay.serving.metrics import ServingMetrics
from modelbay.serving.replica import replica_factory
from modelbay.serving.resolver import ModelResolver
from modelbay.serving.validator import WorkerValidator, validate_here
from modelbay.serving.zygote import Launcher
from modelbay.settings import Settings
from modelbay.store import keyring_from_settings, make_store

log = logging.getLogger("modelbay")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app: registry (migrated), store, catalog, served models, routes."""
    settings = settings or Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.registry_url)
    migrate(engine)
    registry = Registry(engine)
    keyring = keyring_from_settings(settings)
    store = make_store(settings.blob_dir, keyring)
    resolver = ModelResolver(registry)
    audit = AuditLog(engine, *settings.audit_files)
    keys = KeyStore(engine)
    bootstrap_admin(
        keys,
        settings.data_dir,
        settings.admin_key.get_secret_value() if settings.admin_key else None,
        audit,
    )
    # What the frontends of this data directory share: change counters and a table of
    # rate-limit buckets and uncounted requests (see modelbay.frontends).
    run = RunDir(settings.data_dir)
    epochs = SharedEpochs(run.epochs_file)
    table = SharedTable(run.table_file)
    meter = UsageMeter(engine, table=table)
    directory = ResourceDirectory(engine)
    refusals = RefusalThrottle(
        settings.audit_refusals_window_s,
        settings.audit_refusals_per_client,
        settings.audit_refusals_total,
    )
    guard = Guard(
        Authenticator(keys),
        directory,
        RateLimiter(table),
        meter,
        audit,
        refusals,
        before_auth=epochs.sync,
        sessions=ConsoleSessions(engine, keys),
    )
    epochs.on_change(Domain.ACCESS, guard.forget_principals)
    epochs.on_change(Domain.ACCESS, directory.invalidate)
    epochs.on_change(Domain.MODELS, resolver.invalidate_all)
    epochs.on_change(Domain.USAGE, lambda: _in_thread(meter.flush))

    def removed(name: str, version: int | None) -> None:
        resolver.invalidate(name)
        directory.invalidate(name)
        epochs.bump(Domain.MODELS)
        epochs.bump(Domain.ACCESS)
        controller = inference.controller
        controller.forget(name, version)
        controller.notify()  # its deployment went with it, or now follows another version

    # Replica and validation processes are forked by one zygote; none in debugging mode.
    launcher = None if settings.replica_mode == "inprocess" else Launcher(settings.intra_op_threads)
    catalog = Catalog(
        registry,
        store,
        max_upload_bytes=settings.max_upload_bytes,
        threads=settings.intra_op_threads,
        validator=validate_here if launcher is None else WorkerValidator(launcher),
        on_removed=removed,
    )
    metrics = ServingMetrics()
    deployments = DeploymentStore(engine)
    implicit = DeploymentConfig(
        min_replicas=0,
        max_replicas=1,
        idle_to_zero_s=settings.implicit_idle_s,
        threads_per_replica=settings.intra_op_threads,
    )

    def leader(sockets_dir: str) -> DeploymentController:
        if launcher is not None:
            launcher.start()  # it imports the frameworks while the rest starts
        return DeploymentController(
            registry,
            deployments,
            replica_factory(launcher, sockets_dir),
            metrics,
            blob_dir=str(settings.blob_dir),
            keyring=keyring,
            interval_s=settings.reconcile_interval_s,
            max_replicas=settings.max_replicas,
            implicit=implicit,
        )

    def follower(on_leader_gone: Callable[[], None]) -> FollowerController:
        return FollowerController(
            run, epochs, metrics, blob_dir=str(settings.blob_dir), on_leader_gone=on_leader_gone
        )

    def install(controller: Controller) -> None:
        inference.controller = controller
        ctx.controller = controller

    inference = InferenceService(resolver, None, metrics)  # type: ignore[arg-type]
    coordinator = Coordinator(run, epochs, leader, follower, install)
    ctx = AppContext(
        settings,
        registry,
        catalog,
        resolver,
        inference,
        deployments,
        None,  # type: ignore[arg-type]  # installed by coordinator.choose()
        audit,
        keys,
        AccountStore(engine),
        guard,
        epochs,
        DatasetCatalog(
            DatasetStore(engine),
            store,
            max_upload_bytes=settings.max_upload_bytes,
            gc_lock=catalog.gc_lock,
        ),
        JobStore(engine),
    )
    coordinator.choose()
    rules = rest_rules(public_metrics=settings.public_metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await coordinator.start()
        syncer = asyncio.create_task(_sync(epochs))
        # Everything built so far lives as long as the server: out of the collector's way, so
        # a full collection scans what requests allocate, not the frameworks (tens of ms).
        gc.freeze()
        flusher = asyncio.create_task(_flush(guard, settings.usage_flush_interval_s))
        # On uvicorn's event loop, so gRPC and HTTP share the deployments.
        grpc_server = None
        if settings.grpc_port:
            grpc_server = await start_grpc_server(
                ctx, settings.host, settings.grpc_port, settings.tls_pem()
            )
        yield
        if grpc_server is not None:
            await grpc_server.stop(STOP_GRACE_S)
        await coordinator.stop()
        syncer.cancel()
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        if launcher is not None:
            await asyncio.to_thread(launcher.close)
        await asyncio.to_thread(meter.flush)
        await guard.flush_refusals(final=True)
        engine.dispose()

    app = FastAPI(
        title="modelbay",
        version=__version__,
        description="Model-as-a-Service: V2 inference and model management.",
        lifespan=lifespan,
        dependencies=[Depends(authorize_route)],
        docs_url=None,  # served offline by api/docs.py
        redoc_url=None,
    )
    app.state.ctx = ctx

    def release() -> None:
        """Give up what an app that will not be served holds (the leader lock, the zygote):
        ``modelbay serve --workers N`` builds one to prepare the data directory."""
        if launcher is not None:
            launcher.close()
        run.close()
        engine.dispose()

    app.state.release = release
    app.state.guard = guard
    app.state.rules = rules
    install_error_handlers(app)
    app.include_router(v2.router)
    app.include_router(openai_api.router)
    app.include_router(management.router)
    app.include_router(deployments_api.router)
    app.include_router(datasets_api.router)
    app.include_router(jobs_api.router)
    app.include_router(federated_api.router)
    app.include_router(metrics_api.router)
    app.include_router(audit_api.router)
    app.include_router(access_api.router)
    app.include_router(docs_api.router)
    app.mount(docs_api.ASSETS, docs_api.assets(), name="docs-assets")
    app.include_router(console_api.router)
    app.mount(console_api.ASSETS, console_api.assets(), name="console-assets")
    missing = unguarded_routes(app.routes, rules)
    if missing:
        raise RuntimeError(f"routes without an access rule: {', '.join(missing)}")
    document_security(app, rules)
    openai_api.document_openai_errors(app)
    app.add_middleware(
        BodyLimit,
        default=settings.max_request_bytes,
        uploads=settings.max_upload_bytes,
        upload_suffix=management.UPLOAD_SUFFIX,
    )
    app.add_middleware(AuditTrail, audit=audit)
    app.add_middleware(SecurityHeaders)
    # What uvicorn serves: key checks and the V2 infer fast path in front of FastAPI, outside
    # its own middleware (error pages, telemetry, body limits) that the hot path never needs.
    fast_path = InferFastPath(
        app, inference=inference, guard=guard, max_body=settings.max_request_bytes
    )
    app.state.edge = OpaqueServerErrors(
        Gatekeeper(fast_path, guard=guard, public=public_paths(rules))
    )
    return app


def serve_app() -> ASGIApp:
    """The app of one of several frontend processes (uvicorn's factory; settings from the
    environment, which ``modelbay serve --workers N`` prepared)."""
    from modelbay.serving.metrics import clean_dead_processes
    from modelbay.serving.worker import die_with_parent

    die_with_parent(os.getppid())  # with the supervisor: no orphan keeps the port
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    clean_dead_processes()
    return edge_of(create_app(settings))


def edge_of(app: FastAPI) -> ASGIApp:
    """The ASGI app to serve for ``app`` (made by ``create_app``)."""
    edge: ASGIApp = app.state.edge
    return edge


def _in_thread(work: Callable[[], None]) -> None:
    """Start ``work`` on the event loop's executor (called on the loop: no blocking here)."""
    future = asyncio.get_running_loop().run_in_executor(None, work)
    future.add_done_callback(_log_failure)


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("background work failed", exc_info=future.exception())


async def _sync(epochs: SharedEpochs) -> None:
    """Apply other frontends' changes even when no request comes (gRPC, the controller)."""
    while True:
        await asyncio.sleep(0.1)
        try:
            epochs.sync()
        except Exception:
            log.exception("applying another frontend's change failed")


async def _flush(guard: Guard, interval_s: float) -> None:
    """Every ``interval_s``: write counted usage (a failed write is kept for the next) and
    the summary of a refusal window that is over."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(guard.meter.flush)
        except Exception:
            log.exception("could not write usage; it is kept for the next try")
        await guard.flush_refusals()
