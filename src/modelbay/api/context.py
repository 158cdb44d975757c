"""The composition root's products, handed to routes as FastAPI dependencies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from modelbay.catalog import Catalog
from modelbay.frontends.coordinator import Controller
from modelbay.frontends.epochs import SharedEpochs
from modelbay.jobs.dataset_catalog import DatasetCatalog
from modelbay.registry import DeploymentStore, Registry
from modelbay.registry.jobs import JobStore
from modelbay.security.access import ResourceDirectory
from modelbay.security.accounts import AccountStore
from modelbay.security.audit import AuditLog
from modelbay.security.guard import Guard
from modelbay.security.keys import KeyStore
from modelbay.serving.inference import InferenceService
from modelbay.serving.resolver import ModelResolver
from modelbay.settings import Settings


@dataclass
class AppContext:
    """Everything the routes use, built once by ``create_app``."""

    settings: Settings
    registry: Registry
    catalog: Catalog
    resolver: ModelResolver
    inference: InferenceService
    deployments: DeploymentStore
    controller: Controller
    audit: AuditLog
    keys: KeyStore
    accounts: AccountStore
    guard: Guard
    epochs: SharedEpochs
    dataset_catalog: DatasetCatalog
    jobs: JobStore

    @property
    def directory(self) -> ResourceDirectory:
        return self.guard.directory


async def _context(request: Request) -> AppContext:
    # async: a plain def dependency would cost a thread hop on every request
    ctx: AppContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[AppContext, Depends(_context)]
