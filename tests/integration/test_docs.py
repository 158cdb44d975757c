"""The API docs at /docs work offline: every file they load comes from this server."""

from __future__ import annotations

import re

import httpx
from tests.integration import http
from tests.integration.conftest import RunningServer


def test_the_docs_page_loads_only_files_of_this_server_and_no_inline_script(
    server: RunningServer,
) -> None:
    page = httpx.get(f"{server.url}/docs")  # no key: the docs are public
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "//" not in page.text.replace("<!DOCTYPE html>", "")  # no CDN, no other origin
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    assert scripts
    assert all('src="/docs/assets/' in attrs and body.strip() == "" for attrs, body in scripts)
    csp = page.headers["content-security-policy"]
    script_src = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
    assert script_src.split() == ["script-src", "'self'"]
    assert "default-src 'none'" in csp
    for ref in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        asset = httpx.get(f"{server.url}{ref}")
        assert asset.status_code == 200, ref
        kind = "javascript" if ref.endswith(".js") else "css"
        assert kind in asset.headers["content-type"], ref
    bundle = httpx.get(f"{server.url}/docs/assets/swagger-ui-bundle.js")
    assert len(bundle.content) > 500_000  # Swagger UI itself, not a stub
    start = httpx.get(f"{server.url}/docs/assets/docs.js").text
    assert 'url: "/openapi.json"' in start


def test_only_the_docs_assets_are_public(server: RunningServer) -> None:
    assert httpx.get(f"{server.url}/docs/assets/nope.js").status_code == 404
    assert httpx.get(f"{server.url}/docs/../api/v1/models").status_code == 401
    assert http.get(f"{server.url}/redoc").status_code == 404


def test_every_operation_with_a_json_body_documents_its_400(server: RunningServer) -> None:
    """A body that is not JSON is a 400 on every route that takes JSON: the schema says so
    (an undocumented status is what the API fuzzer reports)."""
    schema = httpx.get(f"{server.url}/openapi.json").json()
    missing = [
        f"{method.upper()} {path}"
        for path, operations in schema["paths"].items()
        for method, op in operations.items()
        if "application/json" in op.get("requestBody", {}).get("content", {})
        and "400" not in op["responses"]
    ]
    assert not missing, missing
