"""Encryption at rest: the chunked AES-GCM format, the encrypted store, keys and rotation."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from modelbay.errors import ArtifactCorrupted
from modelbay.registry import VersionRecord
from modelbay.serving.messages import ReplicaSpec
from modelbay.settings import Settings
from modelbay.store import (
    EncryptedArtifactStore,
    Keyring,
    LocalArtifactStore,
    generate_key,
    keyring_from_settings,
    rotate,
)
from modelbay.store.base import CHUNK
from modelbay.store.crypto import HEADER_BYTES, SEALED_CHUNK, TAG_BYTES, decode_key, stored_key_id
from modelbay.tensors import Signature


def _key() -> bytes:
    return os.urandom(32)


def _put(store: LocalArtifactStore, content: bytes) -> str:
    path = store.staging_dir() / "file.bin"
    path.write_bytes(content)
    return store.put_file(path).digest


def _content(size: int) -> bytes:
    # Random, so that any 32-byte window found in the ciphertext would be a real leak.
    return os.urandom(size)


def _read(store: LocalArtifactStore, digest: str, tmp_path: Path) -> bytes:
    out = tmp_path / "out.bin"
    store.copy_to(digest, out)
    return out.read_bytes()


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7])
def test_round_trip_keeps_content_and_plaintext_digest(tmp_path: Path, size: int) -> None:
    store = EncryptedArtifactStore(tmp_path / "blobs", Keyring(_key()))
    content = _content(size)
    digest = _put(store, content)
    assert digest == hashlib.sha256(content).hexdigest()
    chunks = max(1, -(-size // CHUNK))
    assert store.path(digest).stat().st_size == HEADER_BYTES + size + chunks * TAG_BYTES
    assert _read(store, digest, tmp_path) == content
    assert b"".join(store.iter_bytes(digest)) == content
    store.verify(digest)
    assert list((tmp_path / "blobs" / "tmp").glob("sealed-*")) == []


def test_ciphertext_hides_content_and_differs_each_time(tmp_path: Path) -> None:
    key = _key()
    content = _content(CHUNK + 100) + b"a recognisable model header " * 50
    first = EncryptedArtifactStore(tmp_path / "a", Keyring(key))
    second = EncryptedArtifactStore(tmp_path / "b", Keyring(key))
    digest = _put(first, content)
    assert _put(second, content) == digest
    stored = first.path(digest).read_bytes()
    for start in range(0, len(content) - 32, 4096):
        assert content[start : start + 32] not in stored
    assert stored != second.path(digest).read_bytes()


def test_a_blob_under_an_unknown_key_names_the_key_and_the_setting(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    digest = _put(EncryptedArtifactStore(root, Keyring(_key())), b"secret weights")
    with pytest.raises(ArtifactCorrupted, match="key id [0-9a-f]{16}, which is not configured"):
        EncryptedArtifactStore(root, Keyring(_key())).verify(digest)
    with pytest.raises(ArtifactCorrupted, match="no encryption key is configured.*MODELBAY_"):
        EncryptedArtifactStore(root, None).copy_to(digest, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _two_chunk_blob(tmp_path: Path) -> tuple[EncryptedArtifactStore, str, bytes]:
    store = EncryptedArtifactStore(tmp_path / "blobs", Keyring(_key()))
    digest = _put(store, _content(2 * CHUNK + 10))
    return store, digest, store.path(digest).read_bytes()


def _flip_middle_byte(data: bytes) -> bytes:
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    return bytes(flipped)


def _swap_first_chunks(data: bytes) -> bytes:
    first = data[HEADER_BYTES : HEADER_BYTES + SEALED_CHUNK]
    second = data[HEADER_BYTES + SEALED_CHUNK : HEADER_BYTES + 2 * SEALED_CHUNK]
    return data[:HEADER_BYTES] + second + first + data[HEADER_BYTES + 2 * SEALED_CHUNK :]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(_flip_middle_byte, id="tampered-byte"),
        pytest.param(lambda d: d[: HEADER_BYTES + 2 * SEALED_CHUNK], id="truncated-at-chunk"),
        pytest.param(lambda d: d[:-5], id="truncated-mid-chunk"),
        pytest.param(lambda d: d[:HEADER_BYTES], id="header-only"),
        pytest.param(_swap_first_chunks, id="swapped-chunks"),
        pytest.param(lambda d: d + d[HEADER_BYTES : HEADER_BYTES + SEALED_CHUNK], id="appended"),
    ],
)
def test_damaged_ciphertext_is_detected_and_never_delivered(
    tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    store, digest, data = _two_chunk_blob(tmp_path)
    store.path(digest).write_bytes(damage(data))
    with pytest.raises(ArtifactCorrupted, match=f"blob {digest} is corrupted"):
        store.copy_to(digest, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ArtifactCorrupted):
        store.verify(digest)


def test_plaintext_blobs_from_before_encryption_stay_readable(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    digest = _put(LocalArtifactStore(root), b"written before encryption")
    store = EncryptedArtifactStore(root, Keyring(_key()))
    assert _read(store, digest, tmp_path) == b"written before encryption"
    store.path(digest).write_bytes(b"written before encryptioN")
    with pytest.raises(ArtifactCorrupted, match="corrupted"):
        store.verify(digest)


def test_keys_decode_from_either_base64_alphabet_and_key_files(tmp_path: Path) -> None:
    key = bytes(range(250, 256)) * 5 + b"\xfb\xff"
    assert decode_key(base64.urlsafe_b64encode(key).rstrip(b"="), "k") == key
    assert decode_key(base64.b64encode(key).decode() + "\n", "k") == key
    assert decode_key(generate_key(), "k") != decode_key(generate_key(), "k")
    with pytest.raises(ValueError, match="MODELBAY_ENCRYPTION_KEY is not an encryption key"):
        keyring_from_settings(Settings(encryption_key=SecretStr("too-short")))
    raw = tmp_path / "raw.key"
    raw.write_bytes(key)
    old = tmp_path / "old.keys"
    old.write_text(f"# retired in March\n{generate_key()}\n\n")
    keyring = keyring_from_settings(Settings(encryption_key_file=raw, encryption_old_keys_file=old))
    assert keyring is not None
    assert keyring.current == key
    assert len(keyring.encoded()) == 2
    assert key.hex() not in repr(keyring)
    assert keyring_from_settings(Settings()) is None


def test_replica_spec_carries_the_keyring_in_its_json_only(tmp_path: Path) -> None:
    keyring = Keyring(_key(), [_key()])
    record = VersionRecord(
        model="m",
        version=1,
        format="onnx",
        entrypoint="m.onnx",
        files=[],
        signature=Signature.parse({"inputs": [], "outputs": []}),
        description="",
        metadata={},
        metrics={},
        source={},
        tags={},
        aliases=[],
        created_by=None,
        created_at=datetime.now(UTC),
    )
    spec = ReplicaSpec(record, str(tmp_path), 1, keyring)
    decoded = ReplicaSpec.from_json(spec.to_json())
    assert decoded.keyring is not None
    assert decoded.keyring.encoded() == keyring.encoded()
    assert keyring.encoded()[0] not in repr(spec)
    assert ReplicaSpec.from_json(ReplicaSpec(record, str(tmp_path), 1).to_json()).keyring is None


class _Interrupted(Exception):
    pass


def test_interrupted_rotation_keeps_every_blob_readable_and_resumes(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    old, new = _key(), _key()
    contents = [_content(size) for size in (0, 10, CHUNK + 3, 5000, 77)]
    digests = [_put(EncryptedArtifactStore(root, Keyring(old)), c) for c in contents[:4]]
    digests.append(_put(LocalArtifactStore(root), contents[4]))
    broken = _put(EncryptedArtifactStore(root, Keyring(old)), _content(300))
    broken_bytes = _flip_middle_byte(EncryptedArtifactStore(root, None).path(broken).read_bytes())
    EncryptedArtifactStore(root, None).path(broken).write_bytes(broken_bytes)
    rotating = Keyring(new, [old])
    reader = EncryptedArtifactStore(root, rotating)

    def all_readable() -> None:
        for digest, content in zip(digests, contents, strict=True):
            assert b"".join(reader.iter_bytes(digest)) == content

    seen: list[str] = []

    def interrupt_after_three(digest: str, outcome: str) -> None:
        all_readable()
        seen.append(outcome)
        if len(seen) == 3:
            raise _Interrupted

    with pytest.raises(_Interrupted):
        rotate(root, rotating, interrupt_after_three)
    all_readable()

    report = rotate(root, rotating, lambda digest, outcome: all_readable())
    assert report.current + len(report.rotated) == len(digests)
    assert report.current > 0
    assert list(report.failed) == [broken]
    assert "corrupted" in report.failed[broken]
    assert reader.path(broken).read_bytes() == broken_bytes

    only_new = EncryptedArtifactStore(root, Keyring(new))
    for digest, content in zip(digests, contents, strict=True):
        assert stored_key_id(only_new.path(digest), digest) == rotating.current_id
        assert _read(only_new, digest, tmp_path) == content
    again = rotate(root, rotating)
    assert (again.rotated, again.current) == ([], len(digests))
    assert list((root / "tmp").glob("sealed-*")) == []


def test_a_crash_before_the_rename_leaves_the_old_blob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "blobs"
    old, new = _key(), _key()
    digest = _put(EncryptedArtifactStore(root, Keyring(old)), b"weights")
    before = (root / "sha256" / digest[:2] / digest).read_bytes()

    def crash(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        rotate(root, Keyring(new, [old]))
    monkeypatch.undo()
    store = EncryptedArtifactStore(root, Keyring(old))
    assert store.path(digest).read_bytes() == before
    assert list((root / "tmp").glob("sealed-*")) == []
    assert rotate(root, Keyring(new, [old])).rotated == [digest]
