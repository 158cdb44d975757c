"""All configuration in one object: ``MODELBAY_*`` environment variables, CLI flags override."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Server settings; each field reads ``MODELBAY_<FIELD>`` from the environment."""

    model_config = SettingsConfigDict(env_prefix="MODELBAY_", extra="ignore")

    data_dir: Path = Field(default=Path("./modelbay-data"))
    """Where the SQLite registry (by default) and the artifact blobs live."""

    database_url: str | None = None
    """SQLAlchemy URL of the registry; default: SQLite file ``registry.db`` in ``data_dir``."""

    host: str = "127.0.0.1"
    """Interface the HTTP server binds."""

    port: int = 8080
    """Port of the HTTP server."""

    grpc_port: int = 8081
    """Port of the V2 gRPC server; 0 disables it."""

    max_upload_bytes: int = 8 * 1024**3
    """Largest model upload accepted (all files of one version together)."""

    max_request_bytes: int = 256 * 1024**2
    """Largest inference request body accepted."""

    intra_op_threads: int = 1
    """Threads each runtime may use inside one operator (torch, onnxruntime)."""

    inference_threads: int = 2
    """Inference requests run concurrently in-process."""

    load_on_push: bool = True
    """Load (and so validate) a version as soon as it is pushed."""

    replica_mode: Literal["process", "inprocess"] = "process"
    """Deployment replicas as worker processes, or threads of the server (debugging)."""

    reconcile_interval_s: float = 2.0
    """How often deployments are reconciled with the registry (changes made through
    this server apply at once; the interval bounds lag from other frontends)."""

    metrics_public: bool = True
    """Serve /metrics without authentication."""

    log_level: str = "info"
    """Log level of the server."""

    @property
    def registry_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'registry.db').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"
