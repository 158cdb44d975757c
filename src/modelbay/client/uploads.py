"""Files of a push: which files a path names, and reading them with progress reports."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

ProgressCallback = Callable[[int, int], None]
"""Called as ``callback(bytes_sent, total)`` while an upload is read."""


def collect_files(path: str | os.PathLike[str], *, archive: bool = False) -> list[tuple[str, Path]]:
    """``(relative POSIX path, file)`` for a file, or for every file under a directory.

    With ``archive`` the path must be one file: a .zip, .tar or .tar.gz the server unpacks.
    """
    root = Path(path)
    if root.is_file():
        return [(root.name, root)]
    if archive and root.is_dir():
        raise IsADirectoryError(
            f"'{root}' is a directory; an archive push takes one .zip, .tar or .tar.gz file"
        )
    if not root.is_dir():
        raise FileNotFoundError(f"no file or directory at '{root}'")
    found = sorted(p for p in root.rglob("*") if p.is_file())
    if not found:
        raise FileNotFoundError(f"directory '{root}' contains no files")
    return [(p.relative_to(root).as_posix(), p) for p in found]


class UploadProgress:
    """Sums what the readers of one upload have read and reports it to a callback."""

    def __init__(self, total: int, callback: ProgressCallback | None) -> None:
        self.total = total
        self.sent = 0
        self._callback = callback

    def moved(self, delta: int, *, report: bool) -> None:
        self.sent += delta
        if report and self._callback is not None:
            self._callback(self.sent, self.total)


class ProgressReader:
    """A binary file whose reads advance an ``UploadProgress``; bytes are never buffered."""

    def __init__(self, file: BinaryIO, progress: UploadProgress) -> None:
        self._file = file
        self._progress = progress
        self._position = file.tell()
        progress.moved(self._position, report=False)

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        self._moved_to(self._position + len(chunk), report=bool(chunk))
        return chunk

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        # httpx rewinds (and may measure) files before sending them; a seek moves the count
        # silently so a retried upload still ends at ``total``.
        position = self._file.seek(offset, whence)
        self._moved_to(position, report=False)
        return position

    def tell(self) -> int:
        return self._position

    def fileno(self) -> int:
        return self._file.fileno()

    def close(self) -> None:
        self._file.close()

    def _moved_to(self, position: int, *, report: bool) -> None:
        delta, self._position = position - self._position, position
        self._progress.moved(delta, report=report)
