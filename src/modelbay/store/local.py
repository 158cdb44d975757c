"""Artifact store on a local directory: ``blobs/sha256/ab/<digest>``."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from modelbay.errors import ArtifactCorrupted, NotFound
from modelbay.store.base import CHUNK, BlobInfo

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class LocalArtifactStore:
    """Blobs as files, written temp + fsync + rename so a crash never leaves half a blob."""

    def __init__(self, root: Path):
        self.root = root
        self._tmp = root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)
        (root / "sha256").mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        if not _DIGEST.match(digest):
            raise NotFound(f"invalid blob digest '{digest}'")
        return self.root / "sha256" / digest[:2] / digest

    def put_file(self, path: Path) -> BlobInfo:
        """Move a file already on this filesystem into the store, hashing it on the way."""
        hasher = hashlib.sha256()
        size = 0
        with open(path, "rb") as src:
            while chunk := src.read(CHUNK):
                size += len(chunk)
                hasher.update(chunk)
            os.fsync(src.fileno())
        digest = hasher.hexdigest()
        target = self.path(digest)
        if target.exists():
            path.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            _fsync_dir(target.parent)
        return BlobInfo(digest, size)

    def staging_dir(self) -> Path:
        """A fresh directory on the store's filesystem, so ``put_file`` is a rename."""
        return Path(tempfile.mkdtemp(dir=self._tmp, prefix="stage-"))

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def copy_to(self, digest: str, dest: Path) -> None:
        hasher = hashlib.sha256()
        with self._open(digest) as src, open(dest, "wb") as out:
            while chunk := src.read(CHUNK):
                hasher.update(chunk)
                out.write(chunk)
        if hasher.hexdigest() != digest:
            dest.unlink(missing_ok=True)
            raise _corrupted(digest, hasher.hexdigest())

    def verify(self, digest: str) -> None:
        hasher = hashlib.sha256()
        with self._open(digest) as src:
            while chunk := src.read(CHUNK):
                hasher.update(chunk)
        if hasher.hexdigest() != digest:
            raise _corrupted(digest, hasher.hexdigest())

    def iter_bytes(self, digest: str) -> Iterator[bytes]:
        with self._open(digest) as src:
            while chunk := src.read(CHUNK):
                yield chunk

    def delete(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def _open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise ArtifactCorrupted(f"blob {digest} is missing from the artifact store") from None


def _corrupted(expected: str, got: str) -> ArtifactCorrupted:
    return ArtifactCorrupted(
        f"blob {expected} is corrupted: its content hashes to {got}; restore it from a "
        "backup or push the version again"
    )


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not supported on every platform.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
