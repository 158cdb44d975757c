"""Load a registered version into a runtime: verified copies of its blobs, then ``load``."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from modelbay.errors import ArtifactCorrupted, ModelbayError, ModelNotReady
from modelbay.registry import VersionRecord
from modelbay.runtimes import Runtime, load_runtime
from modelbay.store.base import ArtifactStore


def load_version(
    store: ArtifactStore,
    record: VersionRecord,
    *,
    threads: int,
    options: dict[str, Any] | None = None,
) -> Runtime:
    """Materialize the version's files (verifying each digest) and load them."""
    workdir = Path(tempfile.mkdtemp(prefix="modelbay-load-"))
    try:
        for entry in record.files:
            target = workdir / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                store.copy_to(entry.digest, target)
            except ArtifactCorrupted as exc:
                raise ArtifactCorrupted(f"file '{entry.path}': {exc}") from None
        return load_runtime(
            record.format,
            workdir,
            record.entrypoint,
            record.signature,
            threads=threads,
            options=options or {},
        )
    except ModelbayError as exc:
        prefix = f"model '{record.model}' version {record.version} cannot be loaded: "
        if exc.status < 500:
            # The artifact was accepted at push, so failing now is the server's fault.
            raise ModelNotReady(prefix + exc.message) from exc
        exc.message = prefix + exc.message
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
