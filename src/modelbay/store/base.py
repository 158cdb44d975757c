"""The artifact store contract; local disk now, an S3-compatible backend later."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class BlobInfo:
    """A stored blob: its sha256 (hex) and size in bytes."""

    digest: str
    size: int


class ArtifactStore(Protocol):
    """Immutable blobs addressed by the sha256 of their content.

    Writes are atomic (a reader never sees a partial blob) and every read verifies the
    digest, raising ``ArtifactCorrupted`` on mismatch.
    """

    def put_file(self, path: Path) -> BlobInfo:
        """Store a file from ``staging_dir``; the file is consumed (moved or removed)."""
        ...

    def staging_dir(self) -> Path:
        """A new local directory to assemble uploads in before ``put_file``."""
        ...

    def exists(self, digest: str) -> bool:
        """Whether a blob with this digest is stored."""
        ...

    def copy_to(self, digest: str, dest: Path) -> None:
        """Write the blob to ``dest``, verifying it; ``dest`` is removed if it is corrupt."""
        ...

    def verify(self, digest: str) -> None:
        """Read the whole blob and check its digest."""
        ...

    def iter_bytes(self, digest: str) -> Iterator[bytes]:
        """Stream a blob verified beforehand, in chunks."""
        ...

    def delete(self, digest: str) -> None:
        """Remove a blob; deleting a missing blob is not an error."""
        ...
