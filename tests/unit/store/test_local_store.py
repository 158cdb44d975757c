"""The local artifact store: content addressing, atomic writes, verification on read."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from modelbay.errors import ArtifactCorrupted
from modelbay.store import LocalArtifactStore


def _staged(store: LocalArtifactStore, content: bytes) -> Path:
    path = store.staging_dir() / "file.bin"
    path.write_bytes(content)
    return path


def test_blob_is_named_by_its_sha256_and_deduplicated(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    content = b"model bytes" * 1000
    first = store.put_file(_staged(store, content))
    second = store.put_file(_staged(store, content))
    assert first == second
    assert first.digest == hashlib.sha256(content).hexdigest()
    assert first.size == len(content)
    assert store.exists(first.digest)
    assert list((tmp_path / "tmp").rglob("*.bin")) == []


def test_copy_to_returns_the_bytes_and_detects_corruption(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    blob = store.put_file(_staged(store, b"abc" * 100))
    out = tmp_path / "out.bin"
    store.copy_to(blob.digest, out)
    assert out.read_bytes() == b"abc" * 100
    store.path(blob.digest).write_bytes(b"abd" * 100)
    with pytest.raises(ArtifactCorrupted, match="corrupted"):
        store.copy_to(blob.digest, out)
    assert not out.exists()
    with pytest.raises(ArtifactCorrupted):
        store.verify(blob.digest)


def test_missing_blob_is_reported_not_crashed(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    blob = store.put_file(_staged(store, b"x"))
    store.delete(blob.digest)
    store.delete(blob.digest)
    with pytest.raises(ArtifactCorrupted, match="missing"):
        store.verify(blob.digest)
