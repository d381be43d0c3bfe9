"""Test helpers for the policy-layer tests: a tiny origin server and tiny forward proxies.

Why our own servers and not only the simulator: these tests need exact control (a route that
answers 503 twice then 200, a body of N bytes, a redirect to a chosen host) and server-side
timestamps of every request, on ephemeral loopback ports, started in a thread per test.
Everything binds 127.0.0.1 only.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from phx_images.settings import Settings, SourceSettings

Reply = tuple[int, dict[str, str], bytes]
Route = Callable[["Hit"], Reply]


@dataclass
class Hit:
    """One request as the server saw it."""

    at: float
    path: str
    headers: dict[str, str]


@dataclass
class Origin:
    """A running test origin: ``url``, its ``hits`` and the ``routes`` it answers."""

    url: str
    routes: dict[str, Route]
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hits_for(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if urlsplit(h.path).path == path]


def _handler(origin: Origin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            hit = Hit(time.monotonic(), self.path, {k.lower(): v for k, v in self.headers.items()})
            with origin.lock:
                origin.hits.append(hit)
            route = origin.routes.get(urlsplit(self.path).path)
            status, headers, body = route(hit) if route else (404, {}, b"not found")
            self.send_response(status)
            headers = {"Content-Length": str(len(body)), **headers}
            if headers["Content-Length"] == "-":  # no length: close-delimited body (streamed)
                del headers["Content-Length"]
                headers["Connection"] = "close"
                self.close_connection = True
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            with suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextmanager
def origin_server(routes: dict[str, Route] | None = None) -> Iterator[Origin]:
    """An HTTP origin on an ephemeral loopback port, in a thread, for one test."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    origin = Origin(f"http://127.0.0.1:{server.server_address[1]}", routes or {})
    server.RequestHandlerClass = _handler(origin)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield origin
    finally:
        server.shutdown()
        server.server_close()


def ok(body: bytes = b"ok", **headers: str) -> Route:
    return lambda _hit: (200, dict(headers), body)


def sequence(*replies: Reply) -> Route:
    """Answer with ``replies`` in order, repeating the last one."""
    state = {"i": 0}
    lock = threading.Lock()

    def route(_hit: Hit) -> Reply:
        with lock:
            i = min(state["i"], len(replies) - 1)
            state["i"] += 1
        return replies[i]

    return route


@dataclass
class Proxy:
    url: str
    connections: int = 0


class _ForwardHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: Proxy

    def do_GET(self) -> None:
        self.proxy.connections += 1
        target = urlsplit(self.path)
        conn = HTTPConnection(target.hostname, target.port or 80, timeout=10)
        path = target.path + (f"?{target.query}" if target.query else "")
        headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
        conn.request("GET", path, headers=headers)
        upstream = conn.getresponse()
        body = upstream.read()
        self.send_response(upstream.status)
        for key, value in upstream.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Via", "test-proxy")
        self.end_headers()
        self.wfile.write(body)
        conn.close()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def _serve_proxy(server: socketserver.BaseServer, handler: type) -> Iterator[Proxy]:
    """Serve ``handler`` (which counts into the yielded Proxy) until the block ends."""
    proxy = Proxy(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = type("H", (handler,), {"proxy": proxy})
    server.daemon_threads = True  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def forward_proxy() -> Iterator[Proxy]:
    """A working HTTP forward proxy (absolute-form GET) on an ephemeral loopback port."""
    with _serve_proxy(ThreadingHTTPServer(("127.0.0.1", 0), _ForwardHandler),
                      _ForwardHandler) as proxy:
        yield proxy


class _ResetHandler(socketserver.BaseRequestHandler):
    proxy: Proxy

    def handle(self) -> None:
        self.proxy.connections += 1
        sock: socket.socket = self.request
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST: every connection is reset


@contextmanager
def resetting_proxy() -> Iterator[Proxy]:
    """A broken proxy that resets every connection (like the simulator's proxy_bad)."""
    with _serve_proxy(socketserver.ThreadingTCPServer(("127.0.0.1", 0), _ResetHandler),
                      _ResetHandler) as proxy:
        yield proxy


def make_settings(
    tmp_path: Path,
    base_url: str,
    *,
    asset_urls: list[str] | None = None,
    private: list[str] | None = None,
    proxies: list[str] | None = None,
    **source: object,
) -> Settings:
    """Settings whose ``redfin`` and ``assessor`` sources point at ``base_url``.

    ``_env_file=None`` and explicit values: a developer's ``.env`` or ``PHX_`` variables must
    not change what a test means.
    """
    fields = {"max_rps": 50.0, "max_retries": 2, "timeout_s": 5.0, **source}
    redfin = SourceSettings(base_url=base_url, asset_urls=asset_urls or [], **fields)
    assessor_fields = {**fields, "token": fields.get("token", "s3cr3t-assessor-token-XYZ")}
    assessor = SourceSettings(base_url=base_url, asset_urls=asset_urls or [], **assessor_fields)
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        redfin=redfin,
        assessor=assessor,
        allow_private_origins=private if private is not None else [base_url, *(asset_urls or [])],
        proxies=proxies or [],
    )
