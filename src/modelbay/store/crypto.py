"""Encryption at rest: a streaming, chunked AES-256-GCM format and the keys that read it.

A blob is a header (magic, format version, key id, random 96-bit nonce prefix) and then
chunks of ``CHUNK`` plaintext bytes (the last may be shorter, or empty), each sealed with
the nonce ``prefix XOR index`` and associated data binding the header, the chunk's index
and a final-chunk flag, so reordered, truncated or extended blobs fail authentication.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from modelbay.errors import ArtifactCorrupted
from modelbay.store.base import CHUNK

if TYPE_CHECKING:
    from modelbay.settings import Settings

# A non-ASCII first byte (as in PNG's magic) so that no text file looks encrypted.
MAGIC = b"\x89MBAYENC"
FORMAT_VERSION = 1
KEY_BYTES = 32
TAG_BYTES = 16
_HEADER = struct.Struct(">8sB8s12s")
_CHUNK_AAD = struct.Struct(">QB")
HEADER_BYTES = _HEADER.size
SEALED_CHUNK = CHUNK + TAG_BYTES
_KEY_HELP = (
    "set MODELBAY_ENCRYPTION_KEY (or MODELBAY_ENCRYPTION_KEY_FILE) to that key, or list it "
    "in MODELBAY_ENCRYPTION_OLD_KEYS_FILE while keys rotate"
)


def generate_key() -> str:
    """A new random AES-256 key in urlsafe base64, for ``MODELBAY_ENCRYPTION_KEY``."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()


def decode_key(text: str | bytes, source: str) -> bytes:
    """A 32-byte key from base64 text, urlsafe or standard; ``source`` names it in errors."""
    raw = text.encode() if isinstance(text, str) else text
    normalized = raw.strip().replace(b"-", b"+").replace(b"_", b"/")
    normalized += b"=" * (-len(normalized) % 4)
    try:
        key = base64.b64decode(normalized, validate=True)
    except binascii.Error:
        key = b""
    if len(key) != KEY_BYTES:
        raise ValueError(
            f"{source} is not an encryption key: expected {KEY_BYTES} bytes in base64 "
            "('modelbay admin gen-key' makes one)"
        )
    return key


def read_key_file(path: Path) -> bytes:
    """The key in a file: base64 text, or exactly 32 raw bytes."""
    data = path.read_bytes()
    try:
        return decode_key(data, str(path))
    except ValueError:
        # Base64 of a 32-byte key is 43-44 characters, so 32 bytes can only be a raw key.
        if len(data) == KEY_BYTES:
            return data
        raise


def read_old_keys(path: Path) -> list[bytes]:
    """Keys from a file of base64 keys, one a line (blank lines and ``#`` comments skipped)."""
    lines = path.read_text().splitlines()
    return [
        decode_key(line, f"{path} line {number}")
        for number, line in enumerate(lines, 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def key_id(key: bytes) -> bytes:
    """The 8-byte id written in each blob's header: the start of the key's sha256."""
    return hashlib.sha256(key).digest()[:8]


class Keyring:
    """The current key, which encrypts new blobs, and older keys that still decrypt."""

    def __init__(self, current: bytes, old: Iterable[bytes] = ()):
        keys = [current, *old]
        if any(len(key) != KEY_BYTES for key in keys):
            raise ValueError(f"encryption keys are {KEY_BYTES} bytes")
        self.current = current
        self.current_id = key_id(current)
        self._by_id = {key_id(key): key for key in keys}

    def key(self, kid: bytes, blob: str) -> bytes:
        """The key with this id; ``ArtifactCorrupted`` naming the blob if it is not here."""
        key = self._by_id.get(kid)
        if key is None:
            raise ArtifactCorrupted(
                f"blob {blob} is encrypted with key id {kid.hex()}, which is not configured; "
                + _KEY_HELP
            )
        return key

    def encoded(self) -> list[str]:
        """The keys in base64, current first (to send a replica on its stdin)."""
        others = [key for key in self._by_id.values() if key != self.current]
        return [base64.urlsafe_b64encode(key).decode() for key in [self.current, *others]]

    @classmethod
    def decode(cls, keys: list[str]) -> Keyring:
        """The keyring ``encoded`` gave."""
        decoded = [decode_key(key, "a keyring key") for key in keys]
        return cls(decoded[0], decoded[1:])

    def __repr__(self) -> str:
        # Ids only, so that a keyring in a log line leaks nothing.
        return f"Keyring(current={self.current_id.hex()}, keys={len(self._by_id)})"


def keyring_from_settings(settings: Settings) -> Keyring | None:
    """The keyring the ``encryption_*`` settings configure; None when no key is set."""
    if settings.encryption_key is not None and settings.encryption_key_file is not None:
        raise ValueError("set MODELBAY_ENCRYPTION_KEY or MODELBAY_ENCRYPTION_KEY_FILE, not both")
    if settings.encryption_key is not None:
        secret = settings.encryption_key.get_secret_value()
        current = decode_key(secret, "MODELBAY_ENCRYPTION_KEY")
    elif settings.encryption_key_file is not None:
        current = read_key_file(settings.encryption_key_file)
    elif settings.encryption_old_keys_file is not None:
        raise ValueError(
            "MODELBAY_ENCRYPTION_OLD_KEYS_FILE is set without a current key; "
            "set MODELBAY_ENCRYPTION_KEY or MODELBAY_ENCRYPTION_KEY_FILE"
        )
    else:
        return None
    old_file = settings.encryption_old_keys_file
    return Keyring(current, read_old_keys(old_file) if old_file is not None else ())


def encrypt(plaintext: Iterable[bytes], key: bytes) -> Iterator[bytes]:
    """The encrypted blob of ``plaintext`` (pieces of any size), header first, chunk by chunk."""
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, key_id(key), os.urandom(12))
    aead = AESGCM(key)
    yield header
    chunks = _fixed_size(plaintext)
    current = next(chunks, b"")
    index = 0
    # One chunk of look-ahead: the last chunk must be sealed as final.
    for following in chunks:
        yield aead.encrypt(_nonce(header, index), current, _aad(header, index, final=False))
        current, index = following, index + 1
    yield aead.encrypt(_nonce(header, index), current, _aad(header, index, final=True))


def plaintext_chunks(blob: BinaryIO, keyring: Keyring | None, name: str) -> Iterator[bytes]:
    """A stored blob's plaintext, each chunk authenticated; plaintext blobs pass through."""
    header = blob.read(HEADER_BYTES)
    if not header.startswith(MAGIC):
        blob.seek(0)
        while chunk := blob.read(CHUNK):
            yield chunk
        return
    kid = _parse_header(header, name)
    if keyring is None:
        raise ArtifactCorrupted(
            f"blob {name} is encrypted with key id {kid.hex()}, but no encryption key is "
            "configured; " + _KEY_HELP
        )
    aead = AESGCM(keyring.key(kid, name))
    current = blob.read(SEALED_CHUNK)
    index = 0
    while True:
        following = blob.read(SEALED_CHUNK)
        final = not following
        try:
            chunk = aead.decrypt(_nonce(header, index), current, _aad(header, index, final))
        except InvalidTag:
            raise ArtifactCorrupted(
                f"blob {name} is corrupted: its chunk {index} fails authentication (altered, "
                "truncated, reordered or extended); restore it from a backup or push the "
                "version again"
            ) from None
        yield chunk
        if final:
            return
        current, index = following, index + 1


def stored_key_id(path: Path, name: str) -> bytes | None:
    """The key id in a blob file's header, or None for a plaintext blob."""
    with open(path, "rb") as blob:
        header = blob.read(HEADER_BYTES)
    return _parse_header(header, name) if header.startswith(MAGIC) else None


def _parse_header(header: bytes, name: str) -> bytes:
    if len(header) < HEADER_BYTES:
        raise ArtifactCorrupted(f"blob {name} is corrupted: its encryption header is truncated")
    _, version, kid, _ = _HEADER.unpack(header)
    if version != FORMAT_VERSION:
        raise ArtifactCorrupted(
            f"blob {name} is in encryption format version {version}; this modelbay reads "
            f"version {FORMAT_VERSION}"
        )
    return bytes(kid)


def _nonce(header: bytes, index: int) -> bytes:
    prefix = int.from_bytes(header[-12:], "big")
    return (prefix ^ index).to_bytes(12, "big")


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + _CHUNK_AAD.pack(index, final)


def _fixed_size(pieces: Iterable[bytes]) -> Iterator[bytes]:
    # Chunk boundaries must not depend on how the caller happened to read its input.
    buffer = bytearray()
    for piece in pieces:
        if not buffer and len(piece) == CHUNK:
            yield piece
            continue
        buffer += piece
        while len(buffer) >= CHUNK:
            yield bytes(buffer[:CHUNK])
            del buffer[:CHUNK]
    if buffer:
        yield bytes(buffer)
