"""All configuration in one object: ``MODELBAY_*`` environment variables, CLI flags override."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Server settings; each field reads ``MODELBAY_<FIELD>`` from the environment."""

    # An empty variable counts as unset (`MODELBAY_ADMIN_KEY= modelbay serve`).
    model_config = SettingsConfigDict(env_prefix="MODELBAY_", extra="ignore", env_ignore_empty=True)

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

    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    """Frontend processes serving the same ports; one leads (deployments, replicas), the
    others route to its replicas."""

    max_upload_bytes: int = 8 * 1024**3
    """Largest model upload accepted (all files of one version together)."""

    max_request_bytes: int = 256 * 1024**2
    """Largest inference request body accepted."""

    intra_op_threads: int = 1
    """Threads each runtime may use inside one operator (torch, onnxruntime)."""

    implicit_idle_s: float = Field(default=300.0, ge=0, le=7 * 86_400)
    """A model version that no deployment serves runs on one replica started by its first
    request; the replica stops after this many seconds without requests."""

    replica_mode: Literal["process", "inprocess"] = "process"
    """Deployment replicas as worker processes, or threads of the server (debugging)."""

    max_replicas: int = Field(default=32, ge=1)
    """Replica processes all deployments together may run on this server."""

    reconcile_interval_s: float = 2.0
    """How often deployments are reconciled with the registry (changes made through
    this server apply at once; the interval bounds lag from other frontends)."""

    job_workers: int = Field(default=1, ge=0, le=64)
    """Training job workers ``modelbay serve`` runs beside the frontends (0: none; run
    ``modelbay worker`` elsewhere on the same database and store)."""

    job_coordinators: int = Field(default=4, ge=0, le=64)
    """Coordinating jobs (hyperparameter searches, federated jobs) each worker runs beside
    its training job; they mostly wait, for their trials or their clients."""

    job_threads: int = Field(default=1, ge=1, le=256)
    """Threads of each training process (bounded, so serving on the machine keeps up)."""

    job_lease_s: float = Field(default=30.0, ge=1.0, le=3600.0)
    """How long a worker's claim on a job lasts without a heartbeat (three per lease); a
    job whose worker died is resumed by another after this."""

    job_poll_s: float = Field(default=0.25, gt=0, le=60.0)
    """How often an idle worker looks for queued jobs (a read of the jobs table; a worker
    whose own job ends looks at once)."""

    audit_key_file: Path | None = None
    """File holding the audit chain's HMAC key; default ``<data_dir>/audit.key``, created
    on first start. Frontends sharing one database must share it (and the data directory)."""

    audit_refusals_window_s: float = Field(default=60.0, gt=0)
    """Refused requests are audited one by one up to the limits below in each such window;
    the rest are counted into one ``auth.denied.held_back`` event when it ends."""

    audit_refusals_per_client: int = Field(default=5, ge=0)
    """Refusals audited one by one per client address and window."""

    audit_refusals_total: int = Field(default=100, ge=0)
    """Refusals audited one by one per window, all clients together."""

    admin_key: SecretStr | None = Field(default=None, min_length=16)
    """An admin API key to accept (for automation); unset: the first start creates one and
    writes it to ``<data_dir>/admin.key``."""

    console_session_ttl_s: float = Field(default=12 * 3600.0, gt=0, le=30 * 86_400)
    """How long a web console sign-in lasts before the console asks for the API key again."""

    public_metrics: bool = False
    """Serve ``/metrics`` without an API key (it names every tenant's models)."""

    usage_flush_interval_s: float = Field(default=5.0, gt=0)
    """How often counted usage is written to the database."""

    encryption_key: SecretStr | None = None
    """Base64 AES-256 key that encrypts artifact blobs at rest; unset: blobs stay plaintext."""

    encryption_key_file: Path | None = None
    """File holding the encryption key (base64 or 32 raw bytes), instead of ``encryption_key``."""

    encryption_old_keys_file: Path | None = None
    """Older keys (base64, one a line) still accepted for reading while keys rotate."""

    log_level: str = "info"
    """Log level of the server."""

    tls_cert_file: Path | None = None
    """PEM certificate chain; with tls_key_file, HTTP and gRPC serve TLS only."""

    tls_key_file: Path | None = None
    """PEM private key of ``tls_cert_file`` (unencrypted)."""

    @model_validator(mode="after")
    def _check_encryption_keys(self) -> Settings:
        from modelbay.store.crypto import keyring_from_settings  # the store imports settings

        keyring_from_settings(self)  # a malformed or unreadable key fails at start-up
        return self

    @model_validator(mode="after")
    def _check_tls_files(self) -> Settings:
        # At startup and naming the setting, rather than as a traceback from a listener.
        cert, key = self.tls_cert_file, self.tls_key_file
        if cert is None and key is None:
            return self
        if cert is None or key is None:
            given, missing = ("tls_key_file", "tls_cert_file")
            if key is None:
                given, missing = missing, given
            raise ValueError(
                f"{given} is set but {missing} is not (MODELBAY_{missing.upper()}); TLS needs both"
            )
        self.tls_pem()  # each file is readable and PEM
        try:
            # An empty password makes an encrypted key fail here instead of prompting.
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key, "")
        except ssl.SSLError as exc:
            raise ValueError(
                f"tls_cert_file '{cert}' and tls_key_file '{key}' are not a certificate chain "
                f"and its unencrypted private key ({exc.reason or exc})"
            ) from None
        return self

    def tls_pem(self) -> tuple[bytes, bytes] | None:
        """``(certificate chain, private key)`` as PEM bytes, or None when TLS is off."""
        if self.tls_cert_file is None or self.tls_key_file is None:
            return None
        cert = _read_pem(self.tls_cert_file, "tls_cert_file")
        return cert, _read_pem(self.tls_key_file, "tls_key_file")

    @property
    def registry_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'registry.db').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def audit_files(self) -> tuple[Path, Path]:
        """The audit log's head file and chain key file."""
        return self.data_dir / "audit.head", self.audit_key_file or self.data_dir / "audit.key"


def _read_pem(path: Path, setting: str) -> bytes:
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{setting} '{path}' cannot be read: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in pem:
        raise ValueError(f"{setting} '{path}' is not PEM (no '-----BEGIN' line)")
    return pem
