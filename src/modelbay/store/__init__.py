"""Content-addressed artifact store: blobs named by the sha256 of their bytes."""

from modelbay.store.base import ArtifactStore, BlobInfo
from modelbay.store.local import LocalArtifactStore

__all__ = ["ArtifactStore", "BlobInfo", "LocalArtifactStore"]
