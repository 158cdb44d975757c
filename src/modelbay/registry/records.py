"""Plain records the registry returns; also the management API's response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from modelbay.errors import InvalidArtifact
from modelbay.tensors import Signature


class FileEntry(BaseModel):
    """One file of a version: its path inside the version, sha256 digest and size."""

    path: str
    digest: str
    size: int


class ModelRecord(BaseModel):
    """A registered model and a summary of its versions and aliases."""

    name: str
    description: str
    task: str | None
    labels: list[str] | None
    tags: dict[str, str]
    latest_version: int | None
    aliases: dict[str, int]
    tenant: str
    visibility: str = Field(description="private, or public: any tenant may infer")
    shared_with: list[str] = Field(description="Other tenants that may see it and infer")
    created_at: datetime
    updated_at: datetime


class VersionRecord(BaseModel):
    """An immutable model version: format, files, signature and what was recorded with it."""

    model: str
    version: int
    format: str
    entrypoint: str
    files: list[FileEntry]
    signature: Signature
    description: str
    metadata: dict[str, Any]
    metrics: dict[str, Any]
    source: dict[str, Any]
    tags: dict[str, str]
    aliases: list[str]
    created_by: str | None
    created_at: datetime


class NewVersion(BaseModel):
    """What a push records for a new version; the number is assigned by the registry."""

    format: str
    entrypoint: str
    files: list[FileEntry]
    signature: Signature
    description: str = ""
    metadata: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    source: dict[str, Any] = {}
    tags: dict[str, str] = {}
    created_by: str | None = None


class DeploymentConfig(BaseModel):
    """How a deployment serves: replicas, batching, admission control."""

    min_replicas: int = Field(default=1, ge=0, le=64, description="0 scales to zero when idle")
    max_replicas: int = Field(default=1, ge=1, le=64)
    max_batch_size: int = Field(default=16, ge=1, le=4096, description="rows per batch")
    max_queue_delay_ms: float = Field(default=2.0, ge=0, le=10_000)
    queue_capacity: int = Field(default=512, ge=1, le=1_000_000, description="queued requests")
    request_timeout_ms: float = Field(default=30_000, gt=0, le=3_600_000)
    threads_per_replica: int = Field(default=1, ge=1, le=64)
    target_inflight_per_replica: float = Field(default=2.0, gt=0, le=100_000)
    scale_up_delay_s: float = Field(default=1.0, ge=0, le=86_400)
    scale_down_delay_s: float = Field(default=30.0, ge=0, le=86_400)
    idle_to_zero_s: float = Field(default=60.0, ge=0, le=7 * 86_400)
    kv_cache_mb: int | None = Field(
        default=None, ge=1, le=1_048_576, description="LLMs: KV cache per replica (MiB)"
    )
    max_model_len: int | None = Field(
        default=None, ge=16, le=1_048_576, description="LLMs: prompt plus output, at most"
    )
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto", description="LLMs: weights and KV cache (auto: bfloat16 on CUDA)"
    )
    quantization: Literal["none", "int8"] = Field(
        default="none", description="LLMs: int8 = weight-only int8 per output channel"
    )

    @classmethod
    def parse(cls, data: dict[str, Any]) -> DeploymentConfig:
        """Validate user-given settings; errors are ``InvalidArtifact`` (422) naming the field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}"
                for e in exc.errors()
            )
            raise InvalidArtifact(f"invalid deployment settings: {problems}") from None

    @model_validator(mode="after")
    def _replica_range(self) -> DeploymentConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})"
            )
        return self


class DeploymentRecord(BaseModel):
    """A deployment's desired state: which version(s) of a model, and how to serve them."""

    name: str
    model: str
    target: str = Field(description="version number, alias, or 'latest' (follows pushes)")
    canary_target: str | None = None
    canary_weight: int = Field(default=0, ge=0, le=100, description="percent to the canary")
    config: DeploymentConfig
    created_at: datetime
    updated_at: datetime
