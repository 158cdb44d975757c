"""Looking at processes from a test (Linux ``/proc``)."""

from __future__ import annotations

from pathlib import Path


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its parent has not reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.split(") ", 1)[1].startswith("Z")


def children(pid: int) -> list[int]:
    """The live children of ``pid`` (every thread's)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found
