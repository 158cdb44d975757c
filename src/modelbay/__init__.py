"""modelbay: a self-hosted Model-as-a-Service platform."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from modelbay.client import Client


def __getattr__(name: str) -> Any:
    # The SDK is imported on first use so `import modelbay` stays light for the server.
    if name == "Client":
        from modelbay.client import Client

        return Client
    raise AttributeError(name)


__all__ = ["Client", "__version__"]
