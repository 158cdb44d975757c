"""Control-plane operations that touch both the registry and the artifact store.

A push stages the uploaded files (or unpacks the one uploaded archive), checks them
(format and safety here, from the bytes; signature by loading the model in a short-lived
process, see ``serving.validator``), moves them into the content-addressed store and
records the version. Deletes remove rows first and then the blobs no other
version references.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from modelbay.archives import extract, safe_relative_path
from modelbay.errors import InvalidArtifact, InvalidRequest, PayloadTooLarge
from modelbay.registry import FileEntry, NewVersion, Registry, VersionRecord
from modelbay.registry.locks import RegistryLock
from modelbay.registry.tables import DEFAULT_TENANT_ID
from modelbay.runtimes import Checked, detect_format
from modelbay.runtimes.formats import detect_bundle
from modelbay.store.base import CHUNK, ArtifactStore
from modelbay.tensors import Signature

Validator = Callable[..., Checked]
"""``(format, model_dir, entrypoint, signature, *, threads) -> Checked``: load the staged
model and answer its signature (and what it records of itself), or raise the refusal."""

MAX_ARCHIVE_ENTRIES = 10_000
"""Most files and directories an uploaded archive may hold."""

_MODEL_EXTENSIONS = (".onnx", ".pt2", ".skops", ".pt", ".pth", ".ts", ".jit", ".zip")


@dataclass
class PushRequest:
    """What a client sends to create a version (files are read from their streams)."""

    files: list[tuple[str, BinaryIO]]
    format: str | None = None
    signature: Signature | None = None
    entrypoint: str | None = None
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    created_by: str | None = None
    archive: bool = False
    """The single file is a .zip, .tar or .tar.gz of the version's files, unpacked safely."""
    tenant_id: int = DEFAULT_TENANT_ID
    """The tenant a new model is created in."""
    own: bool = False
    """The model, if it exists, must belong to ``tenant_id`` (false for admins)."""


class Catalog:
    """Pushes and deletes versions; notifies listeners (the serving side) of changes."""

    def __init__(
        self,
        registry: Registry,
        store: ArtifactStore,
        *,
        max_upload_bytes: int,
        threads: int,
        validator: Validator,
        on_removed: Callable[[str, int | None], None] | None = None,
        gc_lock: RegistryLock | None = None,
    ):
        self.registry = registry
        self.store = store
        self.max_upload_bytes = max_upload_bytes
        self.threads = threads
        self.validator = validator
        self.on_removed = on_removed
        # Serializes "blobs in, rows in" against "rows out, blobs out", in every process on
        # the registry, so a blob shared by a version being pushed is never collected.
        self.gc_lock = gc_lock or RegistryLock(registry.engine)

    def push(self, name: str, push: PushRequest) -> VersionRecord:
        """Validate, store and register a new version of ``name``; returns the record."""
        if not push.files:
            raise InvalidRequest("a version needs at least one file", param="files")
        if push.archive and len(push.files) != 1:
            raise InvalidRequest(
                f"with archive=true send exactly one file, the archive; got {len(push.files)}",
                param="files",
            )
        stage = self.store.staging_dir()
        try:
            if push.archive:
                paths = self._unpack(stage, push.files[0][1])
            else:
                paths = self._stage(stage, push.files)
            bundle = detect_bundle(stage, paths, push.format)
            if bundle is not None:
                fmt, entrypoint = bundle
            else:
                entrypoint = _entrypoint(paths, push.entrypoint)
                fmt = detect_format(stage / entrypoint, push.format)
            checked = self.validator(fmt, stage, entrypoint, push.signature, threads=self.threads)
            with self.gc_lock.held():
                entries = []
                for rel in paths:
                    blob = self.store.put_file(stage / rel)
                    entries.append(FileEntry(path=rel, digest=blob.digest, size=blob.size))
                record = self.registry.add_version(
                    name,
                    NewVersion(
                        format=fmt,
                        entrypoint=entrypoint,
                        files=entries,
                        signature=checked.signature,
                        description=push.description,
                        metadata={**checked.metadata, **push.metadata},
                        metrics=push.metrics,
                        source=push.source,
                        tags=push.tags,
                        created_by=push.created_by,
                    ),
                    tenant_id=push.tenant_id,
                    own=push.own,
                )
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return record

    def delete_version(self, name: str, version: int) -> None:
        with self.gc_lock.held():
            orphans = self.registry.delete_version(name, version)
            self._collect(orphans)
        if self.on_removed is not None:
            self.on_removed(name, version)

    def delete_model(self, name: str) -> None:
        with self.gc_lock.held():
            orphans = self.registry.delete_model(name)
            self._collect(orphans)
        if self.on_removed is not None:
            self.on_removed(name, None)

    def _collect(self, digests: set[str]) -> None:
        for digest in digests:
            self.store.delete(digest)

    def _stage(self, stage: Path, files: list[tuple[str, BinaryIO]]) -> list[str]:
        total = 0
        paths: list[str] = []
        for raw_path, stream in files:
            rel = safe_relative_path(raw_path)
            if rel in paths:
                raise InvalidRequest(f"file '{rel}' is given twice", param="files")
            target = stage / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            total = copy_limited(stream, target, self.max_upload_bytes, total)
            paths.append(rel)
        return sorted(paths)

    def _unpack(self, stage: Path, archive: BinaryIO) -> list[str]:
        # The archive waits in a directory of its own so its name cannot meet a member's.
        holder = self.store.staging_dir()
        try:
            self._stage(holder, [("archive", archive)])
            return extract(
                holder / "archive",
                stage,
                max_bytes=self.max_upload_bytes,
                max_files=MAX_ARCHIVE_ENTRIES,
            )
        finally:
            shutil.rmtree(holder, ignore_errors=True)


def copy_limited(stream: BinaryIO, target: Path, limit: int, total: int = 0) -> int:
    """Write ``stream`` to ``target`` in chunks; the upload's bytes so far (``total`` before
    this file). 413 as soon as they pass ``limit``: a large upload is never read whole."""
    with open(target, "wb") as out:
        while chunk := stream.read(CHUNK):
            total += len(chunk)
            if total > limit:
                raise PayloadTooLarge(
                    f"upload is larger than the limit of {limit} bytes (MODELBAY_MAX_UPLOAD_BYTES)"
                )
            out.write(chunk)
    return total


def _entrypoint(paths: list[str], given: str | None) -> str:
    if given:
        rel = safe_relative_path(given)
        if rel not in paths:
            raise InvalidArtifact(
                f"entrypoint '{given}' is not among the uploaded files: {', '.join(paths)}",
                param="entrypoint",
            )
        return rel
    if len(paths) == 1:
        return paths[0]
    candidates = [p for p in paths if p.endswith(_MODEL_EXTENSIONS)]
    if len(candidates) == 1:
        return candidates[0]
    raise InvalidArtifact(
        f"cannot tell which of {', '.join(paths)} is the model; pass entrypoint",
        param="entrypoint",
    )
