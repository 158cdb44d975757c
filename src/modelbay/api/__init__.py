"""HTTP edge: the FastAPI app factory and its routers."""

from modelbay.api.app import create_app, edge_of

__all__ = ["create_app", "edge_of"]
