"""The session's admin key for tritonclient (HTTP and gRPC) and raw gRPC stubs."""

from __future__ import annotations

from typing import Any, TypeVar

from tests.integration.http import ADMIN_KEY
from tritonclient.grpc import InferenceServerClientPlugin

Client = TypeVar("Client")


class Bearer(InferenceServerClientPlugin):  # type: ignore[misc]
    """Adds ``authorization: Bearer <key>`` to every request a tritonclient client sends."""

    def __init__(self, key: str = ADMIN_KEY):
        self.key = key

    def __call__(self, request: Any) -> None:
        request.headers["authorization"] = f"Bearer {self.key}"


def keyed(client: Client, key: str = ADMIN_KEY) -> Client:
    """``client`` (a tritonclient ``InferenceServerClient``) sending ``key`` on every call."""
    client.register_plugin(Bearer(key))  # type: ignore[attr-defined]
    return client


def grpc_metadata(key: str = ADMIN_KEY) -> tuple[tuple[str, str], ...]:
    """Metadata for a raw gRPC stub call: ``stub.ModelInfer(request, metadata=...)``."""
    return (("authorization", f"Bearer {key}"),)
