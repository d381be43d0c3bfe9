"""Hashes: identical to imagehash on the same pixels; one decode path; stable across copies."""

from __future__ import annotations

import io

import imagehash
import pytest
from PIL import Image

from phx_images.images import hamming, perceptual_hashes, standardize
from phx_images.images.hashing import dhash_gray, hash_image_source, phash_gray
from phx_images.settings import ImageSettings
from tests.image_helpers import encode, jpeg, photo


def _ih(im: Image.Image) -> tuple[int, int]:
    return int(str(imagehash.phash(im)), 16), int(str(imagehash.dhash(im)), 16)


@pytest.mark.parametrize("seed", range(6))
def test_identical_to_imagehash_on_same_pixels(seed: int) -> None:
    gray = hash_image_source(jpeg(seed))  # the reduced-size decode we really use
    assert (phash_gray(gray), dhash_gray(gray)) == _ih(gray)
    # and on a full-size RGB image with nothing to normalise, end to end
    png = encode(photo(seed, (640, 427)), "PNG")
    with Image.open(io.BytesIO(png)) as im:
        assert perceptual_hashes(png) == _ih(im)


def test_hashes_are_64_bit_ints() -> None:
    ph, dh = perceptual_hashes(jpeg(1))
    assert isinstance(ph, int) and isinstance(dh, int)
    assert 0 <= ph < 2**64 and 0 <= dh < 2**64


@pytest.mark.parametrize("seed", range(4))
def test_reduced_decode_close_to_full_decode(seed: int) -> None:
    data = jpeg(seed)
    with Image.open(io.BytesIO(data)) as full:
        ref = _ih(full)
    ours = perceptual_hashes(data)
    assert hamming(ours[0], ref[0]) <= 4 and hamming(ours[1], ref[1]) <= 4


@pytest.mark.parametrize("seed", range(4))
def test_variants_of_one_photo_stay_within_thresholds(seed: int) -> None:
    base = photo(seed, (1600, 1067))
    variants = [encode(base.resize((w, round(w / 1.5))), "JPEG", quality=q)
                for w, q in ((1536, 85), (1280, 75), (960, 90), (640, 70))]
    variants += [encode(base.resize((1536, 1024)), "WEBP", quality=80),
                 standardize(encode(base, "PNG"), ImageSettings()).data]
    hashes = [perceptual_hashes(v) for v in variants]
    for h in hashes[1:]:
        assert hamming(h[0], hashes[0][0]) <= 8 and hamming(h[1], hashes[0][1]) <= 10


def test_orientation_and_alpha_normalised_before_hashing() -> None:
    base = photo(11, (600, 400))
    upright = perceptual_hashes(encode(base, "PNG"))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated; viewers rotate it back
    rotated = encode(base.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95,
                     exif=exif.tobytes())
    ours = perceptual_hashes(rotated)
    assert hamming(ours[0], upright[0]) <= 4 and hamming(ours[1], upright[1]) <= 4
    rgba = base.convert("RGBA")
    assert perceptual_hashes(encode(rgba, "PNG")) == upright
