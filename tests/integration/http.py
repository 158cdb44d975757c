"""httpx's functions, carrying the session's admin key unless a test sends its own.

Tests of what a server refuses (no key, a wrong key, another role) pass ``headers``.
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx

ADMIN_KEY = f"mb_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"
"""The admin key every test server accepts (``MODELBAY_ADMIN_KEY``)."""


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _keyed(kwargs: dict[str, Any]) -> dict[str, Any]:
    headers = httpx.Headers(kwargs.pop("headers", None))
    if not any(h in headers for h in ("authorization", "api-key", "x-api-key")):
        headers["Authorization"] = f"Bearer {ADMIN_KEY}"
    return {**kwargs, "headers": headers}


def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, url, **_keyed(kwargs))


def get(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(url, **_keyed(kwargs))


def post(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(url, **_keyed(kwargs))


def put(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.put(url, **_keyed(kwargs))


def patch(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.patch(url, **_keyed(kwargs))


def delete(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.delete(url, **_keyed(kwargs))


def client(**kwargs: Any) -> httpx.Client:
    """An ``httpx.Client`` whose requests carry the admin key."""
    return httpx.Client(**_keyed(kwargs))
