"""The composition root's products, handed to routes as FastAPI dependencies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from modelbay.catalog import Catalog
from modelbay.registry import Registry
from modelbay.serving import InferenceService, ServedModels
from modelbay.settings import Settings


@dataclass
class AppContext:
    """Everything the routes use, built once by ``create_app``."""

    settings: Settings
    registry: Registry
    catalog: Catalog
    served: ServedModels
    inference: InferenceService


def _context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[AppContext, Depends(_context)]
