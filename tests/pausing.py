"""A pause a test arms inside a real component, to hold a read between two steps."""

from __future__ import annotations

import threading


class Pause:
    """Once ``armed``, the next ``hit()`` sets ``read`` and blocks until ``go`` is set."""

    def __init__(self) -> None:
        self.armed = False
        self.read = threading.Event()
        self.go = threading.Event()

    def hit(self) -> None:
        if self.armed:
            self.armed = False
            self.read.set()
            assert self.go.wait(5), "the test never let the paused read go on"
