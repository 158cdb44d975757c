"""uvicorn's httptools protocol, with a response's writes leaving the process as one.

uvicorn writes a response's status line and headers, then its body, as two
``transport.write`` calls: two ``send`` system calls and two TCP segments for every answer,
and on loopback each ``send`` also runs the receiver's side of TCP. A small model's V2 answer
is a few hundred bytes, so the second system call is a large share of what the frontend
spends on a request (measured in ``docs/performance.md``).

``CoalescingHttpToolsProtocol`` hands uvicorn a transport that keeps what is written during
one turn of the event loop and writes it at the end of that turn, in one call. Nothing waits
longer than the callbacks already due; flow control, closing and the connection's details are
the real transport's.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

FLUSH_AT = 64 * 1024
"""Held bytes that are written at once: a large answer reaches the transport, and its flow
control, without waiting for the end of the turn."""

PROTOCOL = "modelbay.api.http_protocol:CoalescingHttpToolsProtocol"
"""What ``uvicorn.Config(http=...)`` takes (a string, so it travels to worker processes)."""


class TurnWriter:
    """A transport's writes gathered until the end of the event loop's current turn."""

    __slots__ = ("_held", "_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._held = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        # A caller may reuse a mutable buffer once write() returns: keep a copy of those.
        chunk = data if type(data) is bytes else bytes(data)
        self._pending.append(chunk)
        self._held += len(chunk)
        if self._held >= FLUSH_AT:
            self.flush()

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._pending = []
        self._held = 0
        if self._transport.is_closing():
            return
        self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending = []
        self._held = 0
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._held

    def __getattr__(self, name: str) -> Any:
        # Everything else (reading, flow control, extra info) is the real transport's.
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol writing through a ``TurnWriter``."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        writer: Any = TurnWriter(transport, self.loop)  # type: ignore[arg-type]
        super().connection_made(writer)
