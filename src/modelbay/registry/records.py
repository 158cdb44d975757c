"""Plain records the registry returns; also the management API's response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

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
