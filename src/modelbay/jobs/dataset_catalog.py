"""Datasets as a service: an upload is streamed to disk, read in a process of its own
(``training.inspect_file``), stored content-addressed and recorded as a new version."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, BinaryIO

from modelbay.archives import safe_relative_path
from modelbay.catalog import copy_limited
from modelbay.errors import InvalidRequest, ModelbayError
from modelbay.registry.datasets import DatasetStore, DatasetVersionRecord
from modelbay.registry.locks import RegistryLock
from modelbay.store.base import ArtifactStore

INSPECT_TIMEOUT_S = 600.0


class DatasetCatalog:
    """Push and delete dataset versions; blobs shared with models are collected safely."""

    def __init__(
        self,
        datasets: DatasetStore,
        store: ArtifactStore,
        *,
        max_upload_bytes: int,
        gc_lock: RegistryLock,
    ):
        self.datasets = datasets
        self.store = store
        self.max_upload_bytes = max_upload_bytes
        self.gc_lock = gc_lock

    def push(
        self,
        name: str,
        *,
        upload: tuple[str, BinaryIO] | None = None,
        sample: str | None = None,
        format: str | None = None,
        tenant_id: int,
        own: bool,
        created_by: str | None,
        description: str = "",
    ) -> DatasetVersionRecord:
        """Store ``upload`` (filename, stream) or scikit-learn's sample ``sample`` as the
        next version of ``name``."""
        if (upload is None) == (sample is None):
            raise InvalidRequest("send a file, or name a sample (not both)", param="file")
        stage = self.store.staging_dir()
        try:
            if upload is not None:
                filename = safe_relative_path(upload[0]).rsplit("/", 1)[-1]
                path = stage / filename  # so that what reading it says names the user's file
                self._write(path, upload[1])
                args = [str(path), "--filename", filename]
            else:
                args = ["--sample", str(sample), "--out", str(stage)]
            if format:
                args += ["--format", format]
            found = _inspect(args)
            with self.gc_lock.held():
                blob = self.store.put_file(Path(found["path"]))
                return self.datasets.add_version(
                    name,
                    tenant_id=tenant_id,
                    own=own,
                    format=found["format"],
                    filename=found["filename"],
                    digest=blob.digest,
                    size=blob.size,
                    schema=found["schema"],
                    created_by=created_by,
                    description=description,
                )
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def delete(self, name: str) -> None:
        with self.gc_lock.held():
            for digest in self.datasets.delete(name):
                self.store.delete(digest)

    def _write(self, path: Path, stream: BinaryIO) -> None:
        if copy_limited(stream, path, self.max_upload_bytes) == 0:
            raise InvalidRequest("the uploaded file is empty", param="file")


def _inspect(args: list[str]) -> dict[str, Any]:
    try:
        done = subprocess.run(
            [sys.executable, "-m", "modelbay.training.inspect_file", *args],
            capture_output=True,
            timeout=INSPECT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ModelbayError(
            f"reading the dataset took longer than {INSPECT_TIMEOUT_S:g} s", status=422
        ) from None
    try:
        answer: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        raise ModelbayError(
            f"the dataset could not be read (the reading process ended with status "
            f"{done.returncode})",
            status=422,
        ) from None
    if "error" in answer:
        status = answer.get("status")
        param = answer.get("param")
        raise ModelbayError(
            str(answer["error"]),
            status=status if isinstance(status, int) else 422,
            param=param if isinstance(param, str) else None,
        )
    return answer
