"""The SDK's error: what the server answered (status and message), or why it could not."""

from __future__ import annotations

from modelbay.errors import ModelbayError


class ApiError(ModelbayError):
    """An error answer of the server (``status`` is its HTTP status; 0: no answer at all)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, status=status)

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.message!r})"
