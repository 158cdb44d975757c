"""Archives built inside tests: a zip bomb written in blocks, never held in memory."""

from __future__ import annotations

import zipfile
from pathlib import Path

MIB = 1024 * 1024


def zip_of_zeros(path: Path, mib: int, name: str = "zeros.bin") -> Path:
    """A zip holding one file of ``mib`` MiB of zeros; it deflates about 1000 to 1."""
    block = bytes(MIB)
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open(name, "w") as member,
    ):
        for _ in range(mib):
            member.write(block)
    return path
