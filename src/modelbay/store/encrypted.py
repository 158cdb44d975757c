"""The local artifact store with encryption at rest; blobs keep their plaintext's sha256."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from modelbay.errors import ArtifactCorrupted
from modelbay.store.base import CHUNK, BlobInfo
from modelbay.store.crypto import Keyring, encrypt, plaintext_chunks
from modelbay.store.local import _DIGEST, LocalArtifactStore, _corrupted, _fsync_dir


class EncryptedArtifactStore(LocalArtifactStore):
    """Encrypts what it stores with the keyring's current key and reads any key's blobs.

    Names stay the sha256 of the plaintext, so dedup and manifests are unchanged; plaintext
    blobs from before encryption was turned on stay readable until ``rotate`` encrypts them.
    Without a keyring it stores plaintext and names the missing key when it meets a sealed blob.
    """

    def __init__(self, root: Path, keyring: Keyring | None):
        super().__init__(root)
        self.keyring = keyring

    def put_file(self, path: Path) -> BlobInfo:
        """Encrypt a staged file into the store (temp + fsync + rename); the file is removed."""
        if self.keyring is None:
            return super().put_file(path)
        try:
            with open(path, "rb") as src:
                sealed, info = self._seal(iter(lambda: src.read(CHUNK), b""), self.keyring)
            self._install(sealed, self.path(info.digest), replace=False)
        finally:
            path.unlink(missing_ok=True)
        return info

    def reencrypt(self, digest: str) -> None:
        """Rewrite a blob under the current key, replacing it only once its plaintext checks."""
        if self.keyring is None:
            raise ValueError("re-encrypting needs a keyring")
        with self._open(digest) as src:
            sealed, info = self._seal(plaintext_chunks(src, self.keyring, digest), self.keyring)
        if info.digest != digest:
            sealed.unlink()
            raise _corrupted(digest, info.digest)
        self._install(sealed, self.path(digest), replace=True)

    def digests(self) -> list[str]:
        """The digests of every stored blob, sorted."""
        files = (self.root / "sha256").glob("*/*")
        return sorted(path.name for path in files if _DIGEST.match(path.name))

    def copy_to(self, digest: str, dest: Path) -> None:
        seen = _Digest()
        try:
            with open(dest, "wb") as out:
                for chunk in seen.tap(self._plaintext(digest)):
                    out.write(chunk)
            seen.check(digest)
        except ArtifactCorrupted:
            dest.unlink(missing_ok=True)
            raise

    def verify(self, digest: str) -> None:
        seen = _Digest()
        for _ in seen.tap(self._plaintext(digest)):
            pass
        seen.check(digest)

    def iter_bytes(self, digest: str) -> Iterator[bytes]:
        yield from self._plaintext(digest)

    def _plaintext(self, digest: str) -> Iterator[bytes]:
        with self._open(digest) as src:
            yield from plaintext_chunks(src, self.keyring, digest)

    def _seal(self, plaintext: Iterable[bytes], keyring: Keyring) -> tuple[Path, BlobInfo]:
        """Encrypt into a new fsynced file in the store's tmp dir, hashing the plaintext."""
        seen = _Digest()
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="sealed-")
        sealed = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                for piece in encrypt(seen.tap(plaintext), keyring.current):
                    out.write(piece)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            sealed.unlink(missing_ok=True)
            raise
        return sealed, BlobInfo(seen.hexdigest(), seen.size)

    def _install(self, sealed: Path, target: Path, *, replace: bool) -> None:
        # A rename is atomic: readers see the old file or the new one, never a mix.
        if target.exists() and not replace:
            sealed.unlink()
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(sealed, target)
        _fsync_dir(target.parent)


class _Digest:
    """The sha256 and size of the chunks passed through ``tap``."""

    def __init__(self) -> None:
        self._hasher = hashlib.sha256()
        self.size = 0

    def tap(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self._hasher.update(chunk)
            self.size += len(chunk)
            yield chunk

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()

    def check(self, digest: str) -> None:
        if self.hexdigest() != digest:
            raise _corrupted(digest, self.hexdigest())
