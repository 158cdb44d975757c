"""Key rotation: re-encrypt every blob under the current key, resumably, one blob at a time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from modelbay.errors import ArtifactCorrupted
from modelbay.store.crypto import Keyring, stored_key_id
from modelbay.store.encrypted import EncryptedArtifactStore

Outcome = Literal["rotated", "current", "missing", "failed"]
"""What happened to one blob: re-encrypted, already under the current key, deleted
meanwhile, or left as it was because it cannot be read (see ``RotationReport.failed``)."""

ProgressCallback = Callable[[str, Outcome], None]


@dataclass
class RotationReport:
    """What one ``rotate`` pass did; ``failed`` maps each unreadable blob to the reason."""

    key_id: str
    rotated: list[str] = field(default_factory=list)
    current: int = 0
    missing: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def rotate(
    store_root: Path, keyring: Keyring, progress: ProgressCallback | None = None
) -> RotationReport:
    """Re-encrypt every blob of the store at ``store_root`` not yet under ``keyring.current``.

    Plaintext blobs from before encryption are encrypted too. Each blob is decrypted with the
    keyring's old keys, re-encrypted to a temp file, checked against its digest, fsynced and
    renamed over the original, so an interruption anywhere leaves every blob readable with
    the current or old keys, and running again finishes the job (blobs already under the
    current key are skipped). Unreadable blobs are reported in ``failed`` and left untouched.

    Safe while a server runs only if that server already has the new key as current and the
    old keys in its old-keys file: a reader then sees either ciphertext, both readable. A
    blob deleted while it is being rewritten may come back as an unreferenced file.
    """
    store = EncryptedArtifactStore(store_root, keyring)
    report = RotationReport(keyring.current_id.hex())
    for digest in store.digests():
        outcome = _rotate_one(store, keyring, digest, report)
        if progress is not None:
            progress(digest, outcome)
    return report


def _rotate_one(
    store: EncryptedArtifactStore, keyring: Keyring, digest: str, report: RotationReport
) -> Outcome:
    try:
        if stored_key_id(store.path(digest), digest) == keyring.current_id:
            report.current += 1
            return "current"
        store.reencrypt(digest)
    except FileNotFoundError:
        report.missing += 1
        return "missing"
    except ArtifactCorrupted as exc:
        if not store.exists(digest):
            report.missing += 1
            return "missing"
        report.failed[digest] = exc.message
        return "failed"
    report.rotated.append(digest)
    return "rotated"
