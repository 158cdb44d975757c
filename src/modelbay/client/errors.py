"""The SDK's error: what the server answered (status and message), or why it could not."""

from __future__ import annotations

import httpx

from modelbay.errors import ModelbayError


class ApiError(ModelbayError):
    """An error answer of the server (``status`` is its HTTP status; 0: no answer at all)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, status=status)

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.message!r})"


def raise_for_status(response: httpx.Response) -> None:
    """Raise ``ApiError`` with the server's ``error`` message unless ``response`` succeeded."""
    if response.is_success:
        return
    raise ApiError(response.status_code, _error_message(response))


def _error_message(response: httpx.Response) -> str:
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return str(doc["error"])
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):  # the OpenAI API's
        return str(doc["error"].get("message", ""))
    text = response.text.strip()
    return text[:500] or f"HTTP {response.status_code} {response.reason_phrase}"
