"""The interactive API docs at ``/docs``, served offline: Swagger UI's files come from the
``swagger-ui-bundle-v2`` package and its start-up script from this package, so the page
works without a CDN and under a CSP that allows no inline script."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/docs/assets"
DOCS_CSP = (
    b"content-security-policy",
    b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    b"form-action 'none'",
)
"""Swagger UI sets style attributes from its script (hence 'unsafe-inline' for styles only)."""

_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>modelbay API</title>
<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS}/swagger-ui-bundle.js"></script>
<script src="{ASSETS}/docs.js"></script>
</body>
</html>
"""

router = APIRouter()


@router.get("/docs", include_in_schema=False)
def docs() -> HTMLResponse:
    return HTMLResponse(_PAGE)


def assets() -> StaticFiles:
    """Swagger UI's files, and ``docs.js`` from this package's ``static`` folder."""
    return StaticFiles(directory=str(swagger_ui_path), packages=[("modelbay.api", "static")])
