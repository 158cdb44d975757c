"""``GET /metrics``: Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from modelbay.api.context import ContextDep
from modelbay.serving.metrics import exposition

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(ctx: ContextDep) -> Response:
    return Response(exposition(ctx.inference.metrics.registry), media_type=CONTENT_TYPE_LATEST)
