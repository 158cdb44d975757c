"""Content-addressed artifact store: blobs named by the sha256 of their bytes."""

from pathlib import Path

from modelbay.store.base import ArtifactStore, BlobInfo
from modelbay.store.crypto import Keyring, generate_key, keyring_from_settings
from modelbay.store.encrypted import EncryptedArtifactStore
from modelbay.store.local import LocalArtifactStore
from modelbay.store.rotation import RotationReport, rotate


def make_store(blob_dir: Path, keyring: Keyring | None) -> ArtifactStore:
    """The store every component uses: encrypting with ``keyring``, plaintext without one.

    Even without a keyring it recognizes encrypted blobs, so a missing key is named as such.
    """
    return EncryptedArtifactStore(blob_dir, keyring)


__all__ = [
    "ArtifactStore",
    "BlobInfo",
    "EncryptedArtifactStore",
    "Keyring",
    "LocalArtifactStore",
    "RotationReport",
    "generate_key",
    "keyring_from_settings",
    "make_store",
    "rotate",
]
