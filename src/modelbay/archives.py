"""Paths inside a version, and the safe extraction of an uploaded archive into one.

Each archive member is checked before anything is written (a relative path that stays
inside the destination, a regular file or a directory, named once), and sizes are counted
while writing, never taken from headers, so a bomb stops at the limit whatever it declares.
Nested archives are kept as plain files, never unpacked: TorchScript, torch.export and
skops models are zip files themselves.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, NoReturn, cast

from modelbay.errors import InvalidRequest, PayloadTooLarge
from modelbay.store.base import CHUNK

# A tar header is 512 bytes and pax or GNU long-name records a few KiB; more than this per
# entry is refused before tarfile holds it in memory (3.11.7's pax parser also backtracks
# badly on long records, CVE-2024-6232).
_TAR_HEADER_BYTES_PER_ENTRY = 64 * 1024
# zipfile parses the whole central directory before the first entry is seen; a real entry
# takes about 100-300 bytes there, so this bounds that memory by ``max_files``.
_ZIP_DIRECTORY_BYTES_PER_ENTRY = 1024
_ZIP_END = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_DRIVE = re.compile(r"^[A-Za-z]:")
MAX_PATH_CHARS = 1024  # the registry's column
MAX_NAME_BYTES = 255  # a file name on Linux filesystems
# The stdlib's own member checks (Python 3.11.4+) run after ours, as a second net.
_DATA_FILTER: Callable[[tarfile.TarInfo, str], tarfile.TarInfo] | None = getattr(
    tarfile, "data_filter", None
)
_UNREADABLE = (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)


def safe_relative_path(raw: str) -> str:
    """Normalize a file path inside a version; refuse absolute paths, drives and '..' (zip slip)."""
    cleaned = raw.replace("\\", "/").strip()
    path = PurePosixPath(cleaned)
    if (
        not cleaned
        or path.is_absolute()
        or ".." in path.parts
        or cleaned.startswith("~")
        or _DRIVE.match(cleaned)
        or "\x00" in cleaned
    ):
        raise InvalidRequest(
            f"file path '{raw}' must be relative and stay inside the version", param="files"
        )
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts:
        raise InvalidRequest(f"file path '{raw}' is empty", param="files")
    joined = "/".join(parts)
    longest = max(len(p.encode()) for p in parts)
    if longest > MAX_NAME_BYTES or len(joined) > MAX_PATH_CHARS:
        raise InvalidRequest(
            f"file path '{joined[:80]}...' is too long: at most {MAX_PATH_CHARS} characters, "
            f"{MAX_NAME_BYTES} bytes a name (this one has {len(joined)}, and a name of "
            f"{longest} bytes)",
            param="files",
        )
    return joined


def extract(archive_path: Path, dest_dir: Path, *, max_bytes: int, max_files: int) -> list[str]:
    """Unpack a .zip, .tar or .tar.gz (told apart by content) into the empty ``dest_dir``.

    Returns the files' relative POSIX paths, sorted; after a refusal ``dest_dir`` is empty.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    if any(dest_dir.iterdir()):
        raise ValueError(f"extraction directory '{dest_dir}' is not empty")
    budget = _Budget(dest_dir, max_bytes=max_bytes, max_files=max_files)
    try:
        if zipfile.is_zipfile(archive_path):
            _extract_zip(archive_path, budget)
        elif tarfile.is_tarfile(archive_path):
            _extract_tar(archive_path, budget)
        else:
            raise InvalidRequest(
                "the uploaded file is not a .zip, .tar or .tar.gz archive", param="files"
            )
        if not budget.files:
            raise InvalidRequest("the archive holds no files", param="files")
    except _UNREADABLE as exc:
        _empty(dest_dir)
        where = f"archive member '{budget.member}'" if budget.member else "the archive"
        raise InvalidRequest(f"{where} cannot be read: {exc}", param="files") from None
    except BaseException:
        _empty(dest_dir)
        raise
    return sorted(budget.files)


class _Budget:
    """The members written so far, checked against the limits as they grow."""

    def __init__(self, dest: Path, *, max_bytes: int, max_files: int) -> None:
        self.dest = dest
        self.root = dest.resolve()
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.written = 0
        self.entries = 0
        self.member = ""
        self.files: set[str] = set()
        self.dirs: set[str] = set()

    def enter(self, name: str) -> str:
        """Count member ``name`` and return its normalized path."""
        self.member = name
        self.entries += 1
        if self.entries > self.max_files:
            raise PayloadTooLarge(
                f"the archive has more than {self.max_files} entries", param="files"
            )
        return safe_relative_path(name)

    def refuse_kind(self, kind: str) -> NoReturn:
        message = (
            f"archive member '{self.member}' is a {kind}; only files and directories are accepted"
        )
        raise InvalidRequest(message, param="files")

    def add_dir(self, rel: str) -> None:
        self._claim(rel, is_dir=True)
        self._target(rel).mkdir(parents=True, exist_ok=True)

    def write(self, rel: str, source: IO[bytes]) -> None:
        """Stream ``source`` into ``rel``, counting every byte against ``max_bytes``."""
        self._claim(rel, is_dir=False)
        target = self._target(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as out:
            shutil.copyfileobj(source, _CountingWriter(out, self), CHUNK)

    def count(self, size: int) -> None:
        self.written += size
        if self.written > self.max_bytes:
            raise PayloadTooLarge(
                f"the archive expands to more than {self.max_bytes} bytes "
                f"(MODELBAY_MAX_UPLOAD_BYTES); refused at member '{self.member}'",
                param="files",
            )

    def _claim(self, rel: str, *, is_dir: bool) -> None:
        parents = [str(p) for p in PurePosixPath(rel).parents][:-1]  # without "."
        taken = rel in self.files or (not is_dir and rel in self.dirs)
        if taken or any(p in self.files for p in parents):
            raise InvalidRequest(
                f"archive member '{self.member}' names '{rel}' a second time", param="files"
            )
        self.dirs.update(parents)
        (self.dirs if is_dir else self.files).add(rel)

    def _target(self, rel: str) -> Path:
        target = self.dest / rel
        # Nothing we write is a link, so this cannot fail; it guards against a bug above.
        if not target.resolve().is_relative_to(self.root):
            raise InvalidRequest(f"archive member '{self.member}' leaves the version")
        return target


class _CountingWriter:
    """A file's ``write`` that charges the budget before the bytes reach the disk."""

    def __init__(self, out: IO[bytes], budget: _Budget) -> None:
        self._out = out
        self._budget = budget

    def write(self, data: bytes) -> int:
        self._budget.count(len(data))
        return self._out.write(data)


def _extract_zip(path: Path, budget: _Budget) -> None:
    directory = _zip_directory_size(path)
    if directory > budget.max_files * _ZIP_DIRECTORY_BYTES_PER_ENTRY:
        raise PayloadTooLarge(
            f"the zip's central directory is {directory} bytes, too big for the "
            f"{budget.max_files} entries accepted",
            param="files",
        )
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            rel = budget.enter(info.filename)
            kind = _zip_kind(info)
            if kind is not None:
                budget.refuse_kind(kind)
            if info.is_dir():
                budget.add_dir(rel)
                continue
            with archive.open(info) as source:
                budget.write(rel, source)


def _zip_kind(info: zipfile.ZipInfo) -> str | None:
    if info.flag_bits & 0x1:
        return "encrypted file"
    mode = info.external_attr >> 16  # Unix st_mode; many archivers leave out the type bits
    if not stat.S_IFMT(mode) or stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file"
    return "FIFO" if stat.S_ISFIFO(mode) else f"special file (mode {mode:o})"


def _zip_directory_size(path: Path) -> int:
    """The central directory's size as zipfile will read it: from the zip64 record if any."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        # End record (22 bytes) + comment (< 64 KiB), after zip64 record (56) + locator (20).
        f.seek(max(0, end - (22 + 0xFFFF + 56 + 20)))
        tail = f.read()
    at = tail.rfind(_ZIP_END)
    if at < 0:
        return 0  # zipfile itself will refuse it
    if at >= 76 and tail[at - 20 : at - 16] == _ZIP64_LOCATOR:
        return int.from_bytes(tail[at - 36 : at - 28], "little")
    return int.from_bytes(tail[at + 12 : at + 16], "little")


def _extract_tar(path: Path, budget: _Budget) -> None:
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"  # gzip's magic number
        raw.seek(0)
        # Decompressing here rather than in tarfile lets _TarStream see the tar bytes.
        stream = cast(IO[bytes], gzip.GzipFile(fileobj=raw)) if compressed else raw
        tar_bytes = cast(IO[bytes], _TarStream(stream, budget))
        with tarfile.open(fileobj=tar_bytes, mode="r:") as archive:
            for member in archive:
                _extract_tar_member(archive, member, budget)


def _extract_tar_member(archive: tarfile.TarFile, member: tarfile.TarInfo, budget: _Budget) -> None:
    rel = budget.enter(member.name)
    kind = _tar_kind(member)
    if kind is not None:
        budget.refuse_kind(kind)
    if _DATA_FILTER is not None:
        try:
            _DATA_FILTER(member, str(budget.dest))
        except tarfile.FilterError as exc:
            raise InvalidRequest(
                f"archive member '{member.name}' is refused: {exc}", param="files"
            ) from None
    if member.isdir():
        budget.add_dir(rel)
        return
    # extractfile answers None only for links and special files, refused above.
    with cast(IO[bytes], archive.extractfile(member)) as source:
        budget.write(rel, source)


def _tar_kind(member: tarfile.TarInfo) -> str | None:
    if member.isreg() or member.isdir():
        return None
    if member.issym():
        return "symbolic link"
    if member.islnk():
        return "hard link"
    if member.ischr() or member.isblk():
        return "device file"
    return "FIFO" if member.isfifo() else f"tar entry of type {member.type!r}"


class _TarStream:
    """The tar bytes as tarfile reads them; header reads beyond the allowance are refused."""

    def __init__(self, raw: IO[bytes], budget: _Budget) -> None:
        self._raw = raw
        self._budget = budget

    def read(self, size: int = -1) -> bytes:
        # Data is read in CHUNKs by _Budget.write; every other byte read is a header.
        headers = self._raw.tell() - self._budget.written
        allowance = _TAR_HEADER_BYTES_PER_ENTRY * (self._budget.entries + 1)
        if size < 0 or size > CHUNK or headers > allowance:
            raise PayloadTooLarge(
                f"the tar headers after member '{self._budget.member}' are too large",
                param="files",
            )
        return self._raw.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()


def _empty(directory: Path) -> None:
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
