"""A small HTTP/1.1 server on asyncio streams and h11.

Why not uvicorn: the simulator must misbehave at the connection level (real TCP resets, bodies
trickled a few bytes at a time) which an ASGI server hides. h11 does the parsing and keep-alive
bookkeeping correctly (curl_cffi and Chromium reuse connections); this module only moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import h11

MAX_BODY = 1024 * 1024
IDLE_TIMEOUT_S = 30.0


@dataclass
class Request:
    """One parsed request. Header names are lower-case; the last value of a repeated header
    wins (good enough for a simulator, and never a crash)."""

    method: str
    target: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""
    peer: str = ""
    first_on_connection: bool = True  # False for requests on a kept-alive connection

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    @property
    def cookies(self) -> dict[str, str]:
        jar: dict[str, str] = {}
        for part in self.header("cookie").split(";"):
            name, sep, value = part.strip().partition("=")
            if sep and name:
                jar[name] = value
        return jar


@dataclass
class Response:
    """A response, or an instruction to misbehave (``abort``: reset the connection)."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    abort: bool = False
    trickle_bps: int | None = None

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")


Handler = Callable[[Request], Awaitable[Response]]


def html_response(body: str, status: int = 200, headers: list[tuple[str, str]] | None = None
                  ) -> Response:
    return Response(status, body.encode(), "text/html; charset=utf-8", headers or [])


def json_response(obj: Any, status: int = 200, prefix: str = "",
                  headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, (prefix + json.dumps(obj)).encode(), "application/json",
                    headers or [])


def error_json(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


def parse_target(target: str) -> tuple[str, dict[str, list[str]]]:
    """Split a request target (origin- or absolute-form) into a decoded path and query."""
    parts = urlsplit(target)
    path = unquote(parts.path or "/", errors="replace")
    query = parse_qs(parts.query, keep_blank_values=True, max_num_fields=200)
    return path, query


def reset_connection(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashing server or middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class HTTPServer:
    """Serves one port with one handler. ``on_reset`` is called for each connection the
    handler asked to reset, ``on_connection`` for each accepted one (stats: whether clients
    reuse connections)."""

    def __init__(self, handler: Handler, *, reset_all: bool = False) -> None:
        self.handler = handler
        self.reset_all = reset_all
        self.server: asyncio.Server | None = None
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.on_reset: Callable[[], None] | None = None
        self.on_connection: Callable[[], None] | None = None

    async def start(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(self._connection, host, port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self.on_connection:
            self.on_connection()
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)  # type: ignore[arg-type]
        try:
            if self.reset_all:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(reader.read(65536), 1.0)
                if self.on_reset:
                    self.on_reset()
                reset_connection(writer)
                return
            await self._serve(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Shutdown: swallow, or asyncio logs the cancelled connection task as an error.
            pass
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)  # type: ignore[arg-type]
            with contextlib.suppress(Exception):
                writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        peer = str(writer.get_extra_info("peername"))
        first = True
        while True:
            try:
                request = await self._read_request(conn, reader, writer, peer)
            except h11.RemoteProtocolError as exc:
                await self._send_simple(conn, writer, 400, f"bad request: {exc}")
                return
            if request is None:
                return
            request.first_on_connection, first = first, False
            try:
                response = await self.handler(request)
            except Exception as exc:  # a bug in a site must not kill the server
                response = error_json(500, f"simulator error: {type(exc).__name__}: {exc}")
            if response.abort:
                if self.on_reset:
                    self.on_reset()
                reset_connection(writer)
                return
            await self._send(conn, writer, request, response)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _read_request(self, conn: h11.Connection, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter, peer: str) -> Request | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                if head is not None and conn.they_are_waiting_for_100_continue:
                    writer.write(conn.send(h11.InformationalResponse(status_code=100,
                                                                     headers=[])))
                try:
                    data = await asyncio.wait_for(reader.read(65536), IDLE_TIMEOUT_S)
                except TimeoutError:
                    return None
                conn.receive_data(data)
                continue
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    raise h11.RemoteProtocolError("request body too large")
            elif isinstance(event, h11.EndOfMessage) and head is not None:
                target = head.target.decode("latin-1")
                path, query = parse_target(target)
                headers: dict[str, str] = {}
                for name, value in head.headers:
                    headers[name.decode("latin-1").lower()] = value.decode("latin-1")
                return Request(head.method.decode("latin-1").upper(), target, path, query,
                               headers, bytes(body), peer)

    async def _send(self, conn: h11.Connection, writer: asyncio.StreamWriter, request: Request,
                    response: Response) -> None:
        body = response.body
        headers = [("content-type", response.content_type),
                   ("content-length", str(len(body))), ("server", "phx-sim")]
        headers += [(k, v) for k, v in response.headers if k.lower() != "content-length"]
        try:
            reason = HTTPStatus(response.status).phrase.encode()
        except ValueError:
            reason = b""
        writer.write(conn.send(h11.Response(status_code=response.status, headers=headers,
                                            reason=reason)))
        if request.method != "HEAD" and body:
            if response.trickle_bps:
                step = max(1, response.trickle_bps // 10)
                for i in range(0, len(body), step):
                    writer.write(conn.send(h11.Data(data=body[i:i + step])))
                    await writer.drain()
                    await asyncio.sleep(0.1)
            else:
                writer.write(conn.send(h11.Data(data=body)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()

    async def _send_simple(self, conn: h11.Connection, writer: asyncio.StreamWriter,
                           status: int, message: str) -> None:
        with contextlib.suppress(Exception):
            body = json.dumps({"error": message}).encode()
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                writer.write(conn.send(h11.Response(
                    status_code=status, headers=[("content-type", "application/json"),
                                                 ("content-length", str(len(body))),
                                                 ("connection", "close")])))
                writer.write(conn.send(h11.Data(data=body)))
                writer.write(conn.send(h11.EndOfMessage()))
                await writer.drain()
