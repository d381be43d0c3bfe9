"""64-bit pHash and dHash of a photo, from one decode path shared by every image.

Why one path: two copies of a photo only hash alike if they were decoded alike. Every image --
whatever its format, size, orientation tag or alpha channel -- goes through
:func:`hash_image_source`: JPEGs are decoded at reduced size with ``draft()`` (never below
:data:`DECODE_MIN` px on the short side, far above the 32x32 the hash needs), the EXIF
orientation is applied, transparency goes onto white, then grayscale. The hash functions
themselves are exactly imagehash's ``phash`` and ``dhash`` (same LANCZOS resize, same DCT, same
median, same bit order), so a hash here equals ``int(str(imagehash.phash(gray)), 16)``.
"""

from __future__ import annotations

import contextlib

import numpy as np
from PIL import Image, ImageOps

from phx_images.images.inspect import BadImage, open_image

#: JPEG draft target: the decoded short side stays at least this long.
DECODE_MIN = 128
_DEFAULT_MAX_PIXELS = 60_000_000


def _bits_to_int(bits: np.ndarray) -> int:
    """Row-major bits, first bit most significant: imagehash's ``str()`` order."""
    value = 0
    for bit in bits.flatten():
        value = (value << 1) | int(bool(bit))
    return value


def phash_gray(gray: Image.Image, hash_size: int = 8, highfreq_factor: int = 4) -> int:
    """imagehash.phash on a grayscale image, as an int."""
    import scipy.fftpack

    size = hash_size * highfreq_factor
    pixels = np.asarray(gray.convert("L").resize((size, size), Image.Resampling.LANCZOS))
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)
    low = dct[:hash_size, :hash_size]
    return _bits_to_int(low > np.median(low))


def dhash_gray(gray: Image.Image, hash_size: int = 8) -> int:
    """imagehash.dhash on a grayscale image, as an int."""
    pixels = np.asarray(
        gray.convert("L").resize((hash_size + 1, hash_size), Image.Resampling.LANCZOS)
    )
    return _bits_to_int(pixels[:, 1:] > pixels[:, :-1])


def hash_image_source(data: bytes | Image.Image, *, max_pixels: int = _DEFAULT_MAX_PIXELS
                      ) -> Image.Image:
    """The grayscale image both hashes are computed from (the single decode path)."""
    if isinstance(data, Image.Image):
        im = data
    else:
        im = open_image(data, max_pixels=max_pixels)
        try:
            if im.format == "JPEG":
                short = min(im.size)
                if short > DECODE_MIN:
                    scale = DECODE_MIN / short
                    im.draft("RGB", (max(1, int(im.width * scale)), max(1, int(im.height * scale))))
            im.load()
        except Exception as exc:
            raise BadImage(f"undecodable {im.format}: {type(exc).__name__}: {exc}") from exc
    with contextlib.suppress(Exception):  # a broken orientation tag leaves pixels as stored
        im = ImageOps.exif_transpose(im) or im
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im).convert("RGB")
    return im.convert("L")


def perceptual_hashes(data: bytes | Image.Image, *, max_pixels: int = _DEFAULT_MAX_PIXELS
                      ) -> tuple[int, int]:
    """(phash, dhash) as unsigned 64-bit ints, from one decode of ``data``."""
    gray = hash_image_source(data, max_pixels=max_pixels)
    return phash_gray(gray), dhash_gray(gray)


def hamming(a: int, b: int) -> int:
    """Number of differing bits."""
    return (a ^ b).bit_count()


def to_hex(value: int) -> str:
    """16 hex digits: how hashes are written to JSON (JavaScript cannot hold 64-bit ints)."""
    return f"{value:016x}"


def from_hex(text: str) -> int:
    value = int(text, 16)
    if not 0 <= value < 1 << 64:
        raise ValueError(f"not a 64-bit hash: {text!r}")
    return value
