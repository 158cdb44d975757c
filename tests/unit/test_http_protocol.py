"""The transport that sends a response's writes as one: on a real socket pair and loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest

from modelbay.api.http_protocol import FLUSH_AT, TurnWriter


class _Keeping(asyncio.Protocol):
    """Keeps the real transport, which the tests wrap to record its writes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]


class _Recording:
    """A real transport whose write calls are recorded as they reach it."""

    def __init__(self, transport: asyncio.Transport):
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.transport.write(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.transport, name)


Check = Callable[[TurnWriter, _Recording, socket.socket], Awaitable[None]]


def _on_a_socket_pair(check: Check) -> None:
    """Run ``check(writer, real transport, peer socket)`` on a fresh loop and socket pair."""

    async def main() -> None:
        ours, peer = socket.socketpair()
        _, keeping = await asyncio.get_running_loop().connect_accepted_socket(_Keeping, ours)
        assert keeping.transport is not None
        peer.setblocking(False)
        real = _Recording(keeping.transport)
        writer = TurnWriter(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        try:
            await check(writer, real, peer)
        finally:
            keeping.transport.close()
            peer.close()

    asyncio.run(main())


async def _read(sock: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    got = b""
    while len(got) < size:
        got += await asyncio.wait_for(loop.sock_recv(sock, size - len(got)), 5)
    return got


def test_writes_of_one_turn_leave_as_one() -> None:
    async def check(writer: TurnWriter, real: _Recording, peer: socket.socket) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        writer.write(b"")
        writer.write(b"{}")
        assert real.writes == []  # nothing before the turn ends
        assert writer.get_write_buffer_size() == 40
        await asyncio.sleep(0)
        assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
        assert await _read(peer, 40) == real.writes[0]
        writer.write(b"next")  # a later turn is a write of its own
        await asyncio.sleep(0)
        assert real.writes[1:] == [b"next"]

    _on_a_socket_pair(check)


def test_a_buffer_changed_after_write_is_sent_as_written() -> None:
    async def check(writer: TurnWriter, real: _Recording, peer: socket.socket) -> None:
        buffer = bytearray(b"abcd")
        writer.write(buffer)
        writer.write(memoryview(bytearray(b"\x01\x00\x00\x00")).cast("I"))  # 1 item, 4 bytes
        buffer[:] = b"zzzz"
        assert writer.get_write_buffer_size() == 8
        await asyncio.sleep(0)
        assert await _read(peer, 8) == b"abcd\x01\x00\x00\x00"

    _on_a_socket_pair(check)


def test_close_sends_what_is_held_first() -> None:
    async def check(writer: TurnWriter, real: _Recording, peer: socket.socket) -> None:
        writer.write(b"last words")
        writer.close()
        assert await _read(peer, 10) == b"last words"
        assert await asyncio.get_running_loop().sock_recv(peer, 10) == b""  # then closed
        await asyncio.sleep(0)  # the scheduled flush finds nothing and writes nothing
        assert real.writes == [b"last words"]

    _on_a_socket_pair(check)


def test_abort_drops_what_is_held() -> None:
    async def check(writer: TurnWriter, real: _Recording, peer: socket.socket) -> None:
        writer.write(b"never sent")
        writer.abort()
        await asyncio.sleep(0)
        assert real.writes == []
        assert writer.is_closing()  # the real transport's own state shows through

    _on_a_socket_pair(check)


@pytest.mark.parametrize("chunks", [1, 3])
def test_a_large_answer_reaches_the_transport_at_once(chunks: int) -> None:
    """Held bytes past FLUSH_AT are written in the same turn, so the transport's flow
    control sees them (a large body is not buffered whole in the writer)."""

    async def check(writer: TurnWriter, real: _Recording, peer: socket.socket) -> None:
        size = FLUSH_AT // chunks + 1
        for i in range(chunks):
            writer.write(bytes([i]) * size)
        assert [len(w) for w in real.writes] == [size * chunks]
        got = await _read(peer, size * chunks)
        assert got == b"".join(bytes([i]) * size for i in range(chunks))

    _on_a_socket_pair(check)
