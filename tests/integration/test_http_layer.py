"""The HTTP layer as a client's socket sees it: an answer arrives in one piece."""

from __future__ import annotations

import socket

from tests.integration.conftest import RunningServer
from tests.integration.http import ADMIN_KEY


def _answer_of_first_read(sock: socket.socket, request: bytes) -> tuple[bytes, bytes]:
    """Send ``request``; return (head, the body bytes that came with the head's read)."""
    sock.sendall(request)
    data = sock.recv(1 << 16)
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def test_status_headers_and_body_leave_the_server_as_one_write(server: RunningServer) -> None:
    # uvicorn wrote the head and the body with two send() calls: two TCP segments per
    # answer, and a client's first read often held the head alone (175 of 200 here). The
    # second system call was a large share of a small model's cost (docs/performance.md).
    request = (
        f"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {ADMIN_KEY}\r\n\r\n"
    ).encode()
    split = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(200):  # one keep-alive connection, one request at a time
            head, body = _answer_of_first_read(sock, request)
            assert head.startswith(b"HTTP/1.1 200 "), head
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            assert length > 0
            while len(body) < length:  # read the rest, so the next answer starts clean
                split += 1
                body += sock.recv(1 << 16)
            assert len(body) == length
    assert split == 0, f"{split} of 200 answers came in more than one read"
