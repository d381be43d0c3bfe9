"""Photo CDNs (one per photo site), fixed bad images, and the ``elsewhere`` host.

Why fixed bad images: the downloader's defences (size caps, magic bytes, bomb guard, redirect
allowlist) each need one stable URL that always misbehaves the same way, independent of the
random fault knobs.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib

from PIL import Image

from phx_sim.context import SimContext
from phx_sim.http import Request, Response, json_response

ERROR_HTML = (b"<!DOCTYPE html><html><head><title>Error</title></head><body><h1>Service "
              b"temporarily unavailable</h1><p>Please try again later.</p></body></html>")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@functools.cache
def bomb_png() -> bytes:
    """A ~100 KB PNG that decodes to 30000x30000 1-bit pixels (a decompression bomb)."""
    w = h = 30_000
    row = b"\x00" * (1 + w // 8)
    comp = zlib.compressobj(9)
    parts = [comp.compress(row * 1000) for _ in range(h // 1000)]
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts))
            + _chunk(b"IEND", b""))


@functools.cache
def huge_png() -> bytes:
    """A tiny PNG whose header claims 100000x100000 pixels."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b""))


@functools.cache
def small_jpeg() -> bytes:
    """A small valid JPEG (what ``elsewhere`` serves, and the source of truncated.jpg)."""
    img = Image.linear_gradient("L").resize((320, 213)).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


class PhotoCDN:
    """Serves one photo site's variants by path, plus ``/_bad/*``."""

    def __init__(self, ctx: SimContext, site: str) -> None:
        self.ctx = ctx
        self.site = site
        self.name = f"{site}_photos"
        self.index = ctx.catalog.cdn_index[site]

    async def handle(self, req: Request) -> Response:
        if req.method not in ("GET", "HEAD"):
            return json_response({"error": "method not allowed"}, 405)
        if req.path.startswith("/_bad/"):
            return self._bad(req.path[len("/_bad/"):])
        hit = self.index.get(req.path)
        if hit is None:
            return Response(404, b"Not Found", "text/plain")
        photo_id, vkey = hit
        data = await self.ctx.renderer.get(photo_id, self.site, vkey)
        ctype = "image/webp" if vkey.endswith(".webp") else "image/jpeg"
        return Response(200, data, ctype, [("cache-control", "public, max-age=31536000"),
                                           ("etag", f"\"{photo_id}-{vkey}\"")])

    def _bad(self, name: str) -> Response:
        elsewhere = self.ctx.urls["elsewhere"]
        if name == "bomb.png":
            return Response(200, bomb_png(), "image/png")
        if name == "huge.png":
            return Response(200, huge_png(), "image/png")
        if name == "truncated.jpg":
            return Response(200, truncate(small_jpeg()), "image/jpeg")
        if name == "html.jpg":
            return Response(200, ERROR_HTML, "image/jpeg")
        if name == "empty.jpg":
            return Response(200, b"", "image/jpeg")
        if name == "redirect-out.jpg":
            return Response(302, b"", "text/plain", [("location", f"{elsewhere}/x.jpg")])
        if name == "redirect-private.jpg":
            return Response(302, b"", "text/plain", [("location", "http://10.0.0.1/x.jpg")])
        return Response(404, b"Not Found", "text/plain")


class Elsewhere:
    """A host on no allowlist: it answers everything, so only the engine's allowlist can
    stop a hostile redirect (its request count shows whether one was followed)."""

    name = "elsewhere"

    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx

    async def handle(self, req: Request) -> Response:
        if req.path.lower().endswith((".jpg", ".jpeg")):
            return Response(200, small_jpeg(), "image/jpeg")
        return Response(200, b"<html><body><h1>elsewhere</h1></body></html>",
                        "text/html; charset=utf-8")
