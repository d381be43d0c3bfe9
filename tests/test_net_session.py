"""PacedSession: connections are reused, and libcurl never re-sends a request on its own.

The server here is a raw socket server so that the test controls exactly when a kept-alive
connection is reset (after reading a request, before any answer byte), and counts every
request and connection it sees.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from curl_cffi.requests import AsyncSession
from curl_cffi.requests.exceptions import RequestException

from phx_images.net.client import PolicyClient
from phx_images.net.session import PacedSession, resend_refused
from tests.test_net_support import make_settings


class ScriptedServer:
    """HTTP/1.1 keep-alive server; the request numbers in ``reset_requests`` (1-based, counted
    over the server's lifetime) are answered with a TCP reset instead of a response."""

    def __init__(self, reset_requests: set[int] | None = None) -> None:
        self.reset_requests = reset_requests or set()
        self.requests = 0
        self.connections = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/photo.jpg"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                _, buffer = buffer.split(b"\r\n\r\n", 1)
                with self.lock:
                    self.requests += 1
                    number = self.requests
                if number in self.reset_requests:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return  # close with linger 0: RST, no answer byte
                body = b"x" * 100
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer(reset_requests={2})
    yield srv
    srv.close()


async def _get(session: AsyncSession, url: str) -> int:
    response = await session.request("GET", url, timeout=10)
    return response.status_code


def test_connections_are_reused() -> None:
    srv = ScriptedServer()

    async def main() -> None:
        session = PacedSession(impersonate="chrome")
        try:
            for _ in range(10):
                assert await _get(session, srv.url) == 200
        finally:
            await session.close()

    try:
        asyncio.run(main())
        assert (srv.requests, srv.connections) == (10, 1)
    finally:
        srv.close()


def test_reset_on_a_reused_connection_is_not_resent(server: ScriptedServer) -> None:
    async def main() -> None:
        session = PacedSession(impersonate="chrome")
        try:
            assert await _get(session, server.url) == 200
            with pytest.raises(RequestException) as caught:
                await _get(session, server.url)
            assert resend_refused(caught.value), caught.value
            # the site saw the request it reset, and no twin of it
            assert server.requests == 2
            # the next request is ours to pace, and works on a new connection
            assert await _get(session, server.url) == 200
        finally:
            await session.close()

    asyncio.run(main())
    # three requests; the middle connection is the one libcurl opened for its re-send, which
    # the guard stopped before a byte of the request went out
    assert (server.requests, server.connections) == (3, 3)


def test_plain_libcurl_would_resend(server: ScriptedServer) -> None:
    """Why PacedSession exists: without the guard, libcurl answers the second call by sending
    the request again on a fresh connection, and the caller never learns the site saw two."""

    async def main() -> None:
        session = AsyncSession(impersonate="chrome")
        try:
            assert await _get(session, server.url) == 200
            assert await _get(session, server.url) == 200
        finally:
            await session.close()

    asyncio.run(main())
    assert server.requests == 3 and server.connections == 2


def test_policy_client_retries_a_refused_resend_without_blaming_the_site(
        server: ScriptedServer, tmp_path: Path) -> None:
    """Through the real path (PolicyClient.fetch streams): the reset on the reused connection
    is retried at the next rate slot, on a fresh connection; it is no breaker failure (the
    breaker here opens after one), and the site saw no twin."""
    base = server.url.rsplit("/", 1)[0]
    settings = make_settings(tmp_path, base, breaker_failures=1, max_retries=2)

    async def main() -> dict:
        async with PolicyClient(settings, retry_base_s=0.01) as client:
            for _ in range(2):
                response = await client.fetch("redfin", server.url)
                assert response.status == 200
            return client.metrics()["redfin"]

    metrics = asyncio.run(main())
    assert metrics["resends_refused"] == 1 and metrics["breaker"] == "closed", metrics
    assert server.requests == 3  # ok, reset (no silent twin), our paced retry
