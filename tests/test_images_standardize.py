"""Standardize: metadata gone, upright, RGB on white, bounded size, lossless when possible."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from phx_images.images import standardize
from phx_images.images.standardize import strip_jpeg_metadata
from phx_images.settings import ImageSettings
from tests.image_helpers import encode, jpeg, photo

S = ImageSettings()


def _exif(orientation: int = 1, gps: bool = True) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0131] = "agent-laptop"  # Software
    if gps:
        exif[0x8825] = {1: "N", 2: (33.0, 36.0, 1.0), 3: "W", 4: (112.0, 4.0, 2.0)}
    return exif.tobytes()


def _has_metadata(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as im:
        return bool(im.getexif()) or "icc_profile" in im.info or "exif" in im.info or any(
            k in im.info for k in ("comment", "xmp", "photoshop"))


def test_small_jpeg_is_stripped_losslessly() -> None:
    data = encode(photo(1, (800, 600)), "JPEG", exif=_exif(), comment=b"agent phone 555")
    out = standardize(data, S)
    assert not out.reencoded and out.format == "jpeg" and (out.width, out.height) == (800, 600)
    assert not _has_metadata(out.data)
    assert b"SecretCam" not in out.data and b"555" not in out.data
    # the compressed image data is byte-for-byte the same: nothing was re-encoded
    scan = data[data.index(b"\xff\xda"):]
    assert out.data.endswith(scan)
    with Image.open(io.BytesIO(data)) as a, Image.open(io.BytesIO(out.data)) as b:
        assert a.tobytes() == b.tobytes()


def test_trailing_data_after_eoi_dropped() -> None:
    data = jpeg(2, (300, 200)) + b"GPS 33.6N 112.0W appended"
    stripped = strip_jpeg_metadata(data)
    assert stripped is not None and stripped.endswith(b"\xff\xd9")


def test_large_jpeg_resized_and_metadata_gone() -> None:
    data = encode(photo(3, (2000, 1500)), "JPEG", exif=_exif())
    out = standardize(data, S)
    assert out.reencoded and (out.width, out.height) == (1024, 768)
    assert (out.source_width, out.source_height) == (2000, 1500)
    assert not _has_metadata(out.data) and b"SecretCam" not in out.data


@pytest.mark.parametrize("orientation,expected", [(1, (400, 200)), (3, (400, 200)),
                                                  (6, (200, 400)), (8, (200, 400))])
def test_exif_orientation_applied(orientation: int, expected: tuple[int, int]) -> None:
    im = Image.new("RGB", (400, 200), "white")
    im.paste((255, 0, 0), (0, 0, 100, 200))  # red band on the stored left edge
    out = standardize(encode(im, "JPEG", exif=_exif(orientation)), S)
    assert (out.width, out.height) == expected
    assert not _has_metadata(out.data)
    with Image.open(io.BytesIO(out.data)) as result:
        result = result.convert("RGB")
        corners = {"tl": result.getpixel((5, 5)), "br": result.getpixel((result.width - 6,
                                                                         result.height - 6))}
    red_at = {1: "tl", 3: "br", 6: "tl", 8: "br"}[orientation]
    assert corners[red_at][0] > 200 and corners[red_at][1] < 80


def test_transparency_goes_onto_white() -> None:
    im = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    im.paste((0, 0, 255, 255), (0, 0, 100, 100))
    out = standardize(encode(im, "PNG"), S)
    with Image.open(io.BytesIO(out.data)) as result:
        assert result.mode == "RGB"
        assert min(result.convert("RGB").getpixel((150, 50))) > 240  # white, not black
        assert result.convert("RGB").getpixel((50, 50))[2] > 200


def test_palette_gif_and_animated_first_frame() -> None:
    frames = [photo(i, (120, 80)).convert("P") for i in (4, 5)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out = standardize(buf.getvalue(), S)
    assert out.format == "jpeg" and (out.width, out.height) == (120, 80)


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_other_modes_become_rgb(mode: str) -> None:
    out = standardize(encode(photo(6, (300, 200), mode), "JPEG"), S)
    with Image.open(io.BytesIO(out.data)) as result:
        assert result.mode == "RGB"


def test_icc_profile_converted_and_dropped() -> None:
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out = standardize(encode(photo(7, (300, 200)), "JPEG", icc_profile=icc), S)
    assert not _has_metadata(out.data)


@pytest.mark.parametrize("fmt,magic", [("webp", b"RIFF"), ("png", b"\x89PNG")])
def test_output_format_is_a_setting(fmt: str, magic: bytes) -> None:
    out = standardize(jpeg(8, (1600, 1000)), ImageSettings(output_format=fmt))
    assert out.data.startswith(magic) and out.format == fmt and out.width == 1024


def test_long_side_setting() -> None:
    out = standardize(jpeg(9, (1000, 1500)), ImageSettings(max_long_side=640))
    assert (out.width, out.height) == (427, 640)
