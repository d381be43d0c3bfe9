"""Turn an accepted photo into the form we store: no metadata, upright, RGB, bounded size.

Why: listing photos carry EXIF (camera serials, sometimes GPS of the agent's home), rotated
pixels that only look right through an orientation tag, alpha channels and multi-megapixel
sizes nobody needs. The earlier system re-encoded everything as PNG with ``optimize=True`` --
slow (about 800 ms) and big (about 900 KiB per photo). Here:

* the output format is a setting (JPEG q88 by default);
* a JPEG that already fits (RGB, upright, no colour profile, small enough) is **not**
  re-encoded: its APPn/COM segments are dropped losslessly, so quality is never lost twice;
* otherwise JPEGs decode at reduced size through ``draft()`` (DCT scaling, several times
  faster than a full decode), then LANCZOS does the rest.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps

from phx_images.images.inspect import BadImage, inspect, open_image
from phx_images.settings import ImageSettings

_EXT = {"jpeg": "jpg", "webp": "webp", "png": "png"}
_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Standardized:
    """The bytes to store, and what they are."""

    data: bytes
    format: str  # "jpeg" | "webp" | "png"
    width: int
    height: int
    reencoded: bool
    source_format: str  # as sniffed: "JPEG", "PNG", ...
    source_width: int
    source_height: int

    @property
    def ext(self) -> str:
        return _EXT[self.format]


def target_size(width: int, height: int, max_long_side: int) -> tuple[int, int]:
    """(width, height) scaled so the long side is at most ``max_long_side``."""
    long_side = max(width, height)
    if long_side <= max_long_side:
        return width, height
    scale = max_long_side / long_side
    return max(1, round(width * scale)), max(1, round(height * scale))


def strip_jpeg_metadata(data: bytes) -> bytes | None:
    """Drop every APPn (except Adobe APP14, which says how to decode colours) and COM segment,
    and anything after the end-of-image marker, without touching the compressed pixels.

    Returns None when the marker structure is not what a JPEG must be (the caller re-encodes).
    """
    if data[:2] != b"\xff\xd8":
        return None
    out = [b"\xff\xd8"]
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            out.append(data[pos : pos + 2])
            pos += 2
            continue
        if marker == 0xDA:  # start of scan: the rest is image data up to the first EOI
            end = data.find(b"\xff\xd9", pos)
            if end < 0:
                return None
            out.append(data[pos : end + 2])
            return b"".join(out)
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2 or pos + 2 + length > n:
            return None
        segment = data[pos : pos + 2 + length]
        is_app = 0xE0 <= marker <= 0xEF
        keep = (not is_app and marker != 0xFE) or (
            marker == 0xEE and segment[4:9] == b"Adobe"
        )
        if keep:
            out.append(segment)
        pos += 2 + length
    return None


def _flatten_to_rgb(im: Image.Image) -> Image.Image:
    """RGB with any transparency composited onto white (not black, as a bare convert does)."""
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("LA", "PA", "La"):
        im = im.convert("RGBA")
    if im.mode == "RGBa":
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im, mask=im.getchannel("A"))
        return background
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        im = im.convert("I").point(lambda v: v / 256).convert("L")
    if im.mode != "RGB":
        im = im.convert("RGB")
    return im


def _to_srgb(im: Image.Image, icc: bytes) -> Image.Image:
    """Convert from an embedded colour profile to sRGB, so dropping the profile keeps colours."""
    try:
        from PIL import ImageCms

        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if im.mode not in ("RGB", "CMYK", "L"):
            return im
        return ImageCms.profileToProfile(
            im, src, ImageCms.createProfile("sRGB"), outputMode="RGB"
        ) or im
    except Exception:  # a broken profile is metadata too: ignore it rather than fail
        return im


def _encode(im: Image.Image, settings: ImageSettings) -> bytes:
    buf = io.BytesIO()
    fmt = settings.output_format
    if fmt == "jpeg":
        im.save(buf, "JPEG", quality=settings.jpeg_quality, optimize=True, progressive=False)
    elif fmt == "webp":
        im.save(buf, "WEBP", quality=settings.jpeg_quality, method=4)
    else:
        im.save(buf, "PNG", compress_level=6)
    return buf.getvalue()


def standardize(data: bytes, settings: ImageSettings) -> Standardized:
    """Standardize ``data`` (raises :class:`BadImage` for anything not a safe image)."""
    info = inspect(data, max_pixels=settings.max_pixels, decode=False)
    im = open_image(data, max_pixels=settings.max_pixels)
    try:
        exif_orientation = im.getexif().get(_ORIENTATION, 1)
    except Exception:
        exif_orientation = 1
    icc = im.info.get("icc_profile")
    target = target_size(im.width, im.height, settings.max_long_side)

    if (
        info.format == "JPEG"
        and settings.output_format == "jpeg"
        and im.mode == "RGB"
        and exif_orientation in (1, None)
        and not icc
        and target == im.size
    ):
        stripped = strip_jpeg_metadata(data)
        if stripped is not None and _decodes_as(stripped, im.size):
            return Standardized(
                stripped, "jpeg", im.width, im.height, False, info.format, im.width, im.height
            )

    try:
        if info.format == "JPEG" and target != im.size:
            im.draft(im.mode if im.mode in ("RGB", "L") else None, target)
        if getattr(im, "n_frames", 1) > 1:
            im.seek(0)  # animated GIF/WEBP: the first frame is the photo
        im.load()
        if icc and im.mode in ("RGB", "CMYK", "L"):
            im = _to_srgb(im, icc)
        im = ImageOps.exif_transpose(im) or im
        im = _flatten_to_rgb(im)
        out_size = target_size(im.width, im.height, settings.max_long_side)
        if out_size != im.size:
            im = im.resize(out_size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        im.info.clear()  # nothing from the source may reach the encoder
        encoded = _encode(im, settings)
    except BadImage:
        raise
    except Image.DecompressionBombError as exc:
        raise BadImage(f"decompression bomb: {exc}") from exc
    except Exception as exc:
        raise BadImage(f"undecodable {info.format}: {type(exc).__name__}: {exc}") from exc
    return Standardized(
        encoded, settings.output_format, im.width, im.height, True,
        info.format, info.width, info.height,
    )


def _decodes_as(data: bytes, size: tuple[int, int]) -> bool:
    """A lossless strip must leave a JPEG that still opens at the same size and decodes."""
    try:
        with Image.open(io.BytesIO(data)) as check:
            if check.size != size:
                return False
            check.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            check.load()
        return True
    except Exception:
        return False
