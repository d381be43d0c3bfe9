"""Decide whether a blob of bytes is a real photo we can safely decode, and say why not.

Why by magic bytes and headers only: the sites (and anything between us and them) lie in
``Content-Type`` -- an HTML error page served as ``image/jpeg`` is a classic -- and a hostile or
broken server can send a tiny file whose header claims billions of pixels. So the format comes
from the first bytes, the dimensions from the header *before* Pillow allocates anything, and only
then do we decode (at reduced size where the format allows) to catch truncated or corrupt data.
Every refusal is a :class:`BadImage` whose ``reason`` a person can act on.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

from PIL import Image

#: Formats we accept, by the name Pillow uses.
ACCEPTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP")
#: No real photo (and no JPEG at all) has a side longer than this; a header that claims one is
#: forged or broken, whatever its pixel count.
MAX_SIDE = 65_500


class BadImage(ValueError):
    """Bytes that are not an acceptable image; ``reason`` says why (and ``url`` where from)."""

    def __init__(self, reason: str, *, url: str | None = None) -> None:
        self.reason = reason
        self.url = url
        super().__init__(f"{reason} ({url})" if url else reason)


@dataclass(frozen=True)
class ImageInfo:
    """What we know about an accepted image without keeping it decoded."""

    format: str  # "JPEG" | "PNG" | "GIF" | "WEBP"
    width: int
    height: int
    mode: str
    size_bytes: int

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def ext(self) -> str:
        return {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp"}[self.format]


def sniff_format(data: bytes) -> str | None:
    """The format named by the magic bytes, or None. Never looks at anything else."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _describe_non_image(data: bytes) -> str:
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in head:
        return "HTML page, not an image"
    if head.startswith((b"<?xml", b"<svg")) or b"<svg" in head:
        return "XML/SVG document, not an accepted image format"
    if head.startswith((b"{", b"[")):
        return "JSON/text, not an image"
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in data[:512])
    if printable >= 0.95 * min(len(data), 512):
        return "text, not an image"
    return f"unknown format (first bytes {data[:8].hex()}); accepted: JPEG, PNG, GIF, WEBP"


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Scan JPEG markers up to the first SOFn and read its height/width."""
    pos = 2
    n = len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if length < 2:
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > n:
                return None
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        if marker == 0xDA:  # start of scan before any frame header
            return None
        pos += 2 + length
    return None


def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def _gif_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 10:
        return None
    return struct.unpack("<HH", data[6:10])


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30:
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


_HEADER_SIZE = {"JPEG": _jpeg_size, "PNG": _png_size, "GIF": _gif_size, "WEBP": _webp_size}


def header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """Dimensions as the file header states them, read without Pillow (so nothing is allocated)."""
    try:
        return _HEADER_SIZE[fmt](data)
    except (struct.error, KeyError, IndexError):
        return None


def _truncation(data: bytes, fmt: str) -> str | None:
    """Cheap end-of-file checks: a cut download loses its trailer."""
    tail = data[-64:].rstrip(b"\x00\r\n ")
    if fmt == "JPEG" and b"\xff\xd9" not in tail[-16:]:
        return "truncated JPEG: no end-of-image marker"
    if fmt == "PNG" and b"IEND" not in data[-32:]:
        return "truncated PNG: no IEND chunk"
    if fmt == "GIF" and not tail.endswith(b";"):
        return "truncated GIF: no trailer"
    if fmt == "WEBP":
        declared = int.from_bytes(data[4:8], "little") + 8
        if declared > len(data):
            return f"truncated WEBP: header declares {declared} bytes, got {len(data)}"
    return None


def check_dimensions(width: int, height: int, *, max_pixels: int) -> None:
    """Refuse forged or bomb-sized dimensions (raise :class:`BadImage`)."""
    if width <= 0 or height <= 0:
        raise BadImage(f"invalid dimensions {width}x{height}")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise BadImage(f"huge dimensions {width}x{height} (a side over {MAX_SIDE})")
    if width * height > max_pixels:
        raise BadImage(
            f"decompression bomb: {width}x{height} = {width * height:,} pixels, "
            f"over the limit of {max_pixels:,}"
        )


def open_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Open (lazily) with Pillow, mapping its bomb guard and parse errors to BadImage."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"decompression bomb: {exc}") from exc
    except Exception as exc:  # Pillow raises many types on hostile input
        raise BadImage(f"undecodable: {type(exc).__name__}: {exc}") from exc
    if im.format not in ACCEPTED_FORMATS:
        raise BadImage(f"format {im.format} not accepted")
    check_dimensions(im.width, im.height, max_pixels=max_pixels)
    return im


def inspect(data: bytes, *, max_pixels: int, decode: bool = True) -> ImageInfo:
    """Accept ``data`` as an image or raise :class:`BadImage` with the reason.

    Order matters: empty -> magic bytes -> header dimensions (bomb / huge) -> trailer
    (truncated) -> Pillow open -> decode (at reduced size for JPEG). ``decode=False`` skips the
    last step when the caller decodes anyway and maps its errors itself.
    """
    if not data:
        raise BadImage("empty (0 bytes)")
    fmt = sniff_format(data)
    if fmt is None:
        raise BadImage(_describe_non_image(data))
    size = header_size(data, fmt)
    if size is None:
        raise BadImage(f"undecodable {fmt}: no readable size in the header")
    check_dimensions(*size, max_pixels=max_pixels)
    reason = _truncation(data, fmt)
    if reason:
        raise BadImage(reason)
    im = open_image(data, max_pixels=max_pixels)
    width, height, mode = im.width, im.height, im.mode
    if decode:
        try:
            if im.format == "JPEG":
                im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
        except Image.DecompressionBombError as exc:
            raise BadImage(f"decompression bomb: {exc}") from exc
        except Exception as exc:
            raise BadImage(f"undecodable {fmt}: {type(exc).__name__}: {exc}") from exc
    return ImageInfo(format=fmt, width=width, height=height, mode=mode, size_bytes=len(data))
