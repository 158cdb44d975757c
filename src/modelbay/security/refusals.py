"""Which refusals get an audit event of their own, as pure state with the time passed in.

A flood of bad keys must not become a flood of audit rows (each one a database write under
the audit lock). In each window, a client address gets at most ``per_client`` events of its
own and all clients together at most ``total``; the rest are counted, and the window ends
with one summary event saying how many refusals of which kind, from where, it held back.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_TOP_CLIENTS = 10


@dataclass
class RefusalThrottle:
    window_s: float = 60.0
    per_client: int = 5
    total: int = 100
    _start: float | None = None
    _audited: Counter[str] = field(default_factory=Counter)
    _held: Counter[str] = field(default_factory=Counter)
    _held_actions: Counter[str] = field(default_factory=Counter)

    def admit(self, client: str | None, action: str, now: float) -> bool:
        """True: audit this refusal on its own; False: it is counted into the summary.
        Call ``summary(now)`` first, so a window that is over is reported before."""
        if self._start is None:
            self._start = now
        who = client or "unknown"
        if self._audited[who] < self.per_client and self._audited.total() < self.total:
            self._audited[who] += 1
            return True
        self._held[who] += 1
        self._held_actions[action] += 1
        return False

    def summary(self, now: float, *, final: bool = False) -> dict[str, Any] | None:
        """When the window is over (or ``final``, at shutdown): what it held back (None if
        nothing), and a new window."""
        if self._start is None or (now - self._start < self.window_s and not final):
            return None
        held = self._held.total()
        report = None
        if held:
            report = {
                "held_back": held,
                "window_s": round(now - self._start, 3),
                "actions": dict(self._held_actions),
                "clients": len(self._held),
                "top_clients": dict(self._held.most_common(_TOP_CLIENTS)),
            }
        self._start = None
        self._audited.clear()
        self._held.clear()
        self._held_actions.clear()
        return report
