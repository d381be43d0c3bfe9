"""Bad images are refused with a clear reason; good ones in the same batch are unaffected."""

from __future__ import annotations

import pytest

from phx_images.images import BadImage, inspect, standardize
from phx_images.settings import ImageSettings
from tests.image_helpers import bomb_png, encode, jpeg, photo

MAX = ImageSettings().max_pixels


def _huge_header_png() -> bytes:
    # Only the header matters: it must be refused before anything is decoded.
    return bomb_png(100_000, 100_000)[:33] + b"\x00" * 64


BAD: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "empty"),
    "html": (b"<!DOCTYPE html><html><body>Error 503</body></html>", "HTML"),
    "html-with-bom": (b"\xef\xbb\xbf  <html><head></head></html>", "HTML"),
    "text": (b"Service temporarily unavailable, try later\n", "text"),
    "json": (b'{"error": "not found"}', "JSON"),
    "truncated-jpeg": (jpeg(1)[: len(jpeg(1)) // 2], "truncated"),
    "truncated-png": (encode(photo(2, (300, 200)), "PNG")[:2000], "truncated"),
    "bomb": (bomb_png(30000, 30000), "decompression bomb"),
    "huge-dims": (_huge_header_png(), "huge dimensions"),
    "jpeg-garbage": (b"\xff\xd8\xff\xe0" + b"\x13" * 500 + b"\xff\xd9", "undecodable"),
    "unknown-binary": (bytes(range(256)) * 4, "unknown format"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_image_refused_with_reason(name: str) -> None:
    data, expected = BAD[name]
    with pytest.raises(BadImage) as info:
        inspect(data, max_pixels=MAX)
    assert expected.lower() in info.value.reason.lower(), info.value.reason
    # standardize refuses it the same way
    with pytest.raises(BadImage):
        standardize(data, ImageSettings())


def test_pillow_bomb_guard_is_mapped_too() -> None:
    # Our limit raised out of the way: Pillow's own DecompressionBombError must still be caught.
    with pytest.raises(BadImage, match="decompression bomb"):
        inspect(bomb_png(30000, 30000), max_pixels=10**12)


def test_bomb_refused_by_setting_even_when_small() -> None:
    with pytest.raises(BadImage, match="over the limit"):
        inspect(jpeg(3, (400, 300)), max_pixels=100_000)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP"])
def test_accepted_formats(fmt: str) -> None:
    data = encode(photo(4, (320, 200)), fmt)
    info = inspect(data, max_pixels=MAX)
    assert (info.format, info.width, info.height) == (fmt, 320, 200)


def test_content_type_is_irrelevant_magic_bytes_decide() -> None:
    png = encode(photo(5, (64, 48)), "PNG")
    assert inspect(png, max_pixels=MAX).format == "PNG"  # whatever a server said it was


def test_batch_with_bad_images_keeps_the_good_ones() -> None:
    settings = ImageSettings()
    batch = [jpeg(10), BAD["bomb"][0], jpeg(11), BAD["html"][0], BAD["truncated-jpeg"][0],
             jpeg(12), b""]
    ok, refused = [], []
    for data in batch:
        try:
            ok.append(standardize(data, settings))
        except BadImage as exc:
            refused.append(exc.reason)
    assert len(ok) == 3 and len(refused) == 4
    assert all(s.width == 1024 for s in ok)
