"""Pure image operations: source photographs, recipes, site variants, perceptual hashes.

Why a module of its own: the catalog generator (which validates recipes on small renders) and
the renderer (which produces the bytes the CDNs serve) must apply *exactly* the same operations,
or the generator's guarantees (variants stay near-duplicates of their canonical photo, distinct
photos stay apart) would not hold for what is actually served.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, ImageDraw

CANON_W, CANON_H = 1600, 1067
ASPECT = CANON_W / CANON_H

# Source photographs shipped by scikit-image. Only the folder is located through the package;
# the files are read with Pillow so that rendering never imports scikit-image itself.
SOURCES: tuple[str, ...] = (
    "astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png",
    "motorcycle_left.png", "motorcycle_right.png", "retina.jpg", "rocket.jpg",
    "camera.png", "brick.png", "grass.png", "gravel.png", "moon.png", "coins.png", "cell.png",
    "clock_motion.png",
)


@functools.cache
def source_dir() -> Path:
    """The folder of scikit-image's bundled photographs, found without importing skimage."""
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("scikit-image is not installed: the simulator needs its photographs")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@functools.lru_cache(maxsize=32)
def load_source(name: str) -> Image.Image:
    """A source photograph as RGB (grayscale ones are tinted later by the recipe's colours)."""
    if name not in SOURCES:
        raise ValueError(f"unknown source photograph {name!r}")
    with Image.open(source_dir() / name) as img:
        img.load()
        return img.convert("RGB")


@dataclass(frozen=True)
class Recipe:
    """How to make one canonical photo: a 3:2 crop of a source, optionally mirrored, recoloured.

    ``box`` is (left, top, width) as fractions of the source's width/height; the crop height
    follows from the 3:2 aspect so nothing is ever stretched.
    """

    source: str
    left: float
    top: float
    width: float
    flip: bool
    color: tuple[float, float, float]
    offset: tuple[float, float, float]

    def pixel_box(self, size: tuple[int, int]) -> tuple[float, float, float, float]:
        sw, sh = size
        w = self.width * sw
        h = w / ASPECT
        x0 = self.left * sw
        y0 = self.top * sh
        return (x0, y0, x0 + w, y0 + h)

    def to_json(self) -> list[object]:
        return [self.source, self.left, self.top, self.width, self.flip,
                list(self.color), list(self.offset)]

    @classmethod
    def from_json(cls, data: list) -> Recipe:
        source, left, top, width, flip, color, offset = data
        return cls(str(source), float(left), float(top), float(width), bool(flip),
                   tuple(float(c) for c in color), tuple(float(o) for o in offset))  # type: ignore[arg-type]


def fits(source: str, left: float, top: float, width: float) -> bool:
    """Whether a crop lies wholly inside its source."""
    sw, sh = load_source(source).size
    h_frac = (width * sw / ASPECT) / sh
    return left >= 0 and top >= 0 and left + width <= 1.0 and top + h_frac <= 1.0


def render_recipe(recipe: Recipe, size: tuple[int, int] = (CANON_W, CANON_H)) -> Image.Image:
    """Render a recipe at ``size`` (the canonical 1600x1067, or smaller for validation)."""
    src = load_source(recipe.source)
    img = src.resize(size, Image.Resampling.BICUBIC, box=recipe.pixel_box(src.size))
    if recipe.flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    r, g, b = recipe.color
    orr, og, ob = recipe.offset
    return img.convert("RGB", (r, 0, 0, orr, 0, g, 0, og, 0, 0, b, ob))


def watermark(img: Image.Image) -> Image.Image:
    """Redfin's light watermark: a translucent badge bottom-right, proportional to the image
    so that validation on small renders sees the same relative change as the served bytes."""
    w, h = img.size
    base = img.convert("RGBA")
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    x1, y1 = w * 0.975, h * 0.955
    x0, y0 = x1 - w * 0.16, y1 - h * 0.07
    draw.rectangle((x0, y0, x1, y1), fill=(255, 255, 255, 48))
    bar_h = (y1 - y0) * 0.22
    for i in range(3):
        bx0 = x0 + (x1 - x0) * (0.1 + 0.28 * i)
        draw.rectangle((bx0, y0 + bar_h * 1.5, bx0 + (x1 - x0) * 0.2, y1 - bar_h * 1.5),
                       fill=(200, 30, 30, 56))
    return Image.alpha_composite(base, layer).convert("RGB")


def centre_crop(img: Image.Image, aspect: float) -> Image.Image:
    """The largest centred crop of ``img`` with the given aspect (Redfin's mbphotov3)."""
    w, h = img.size
    if w / h > aspect:
        cw = h * aspect
        return img.crop((round((w - cw) / 2), 0, round((w + cw) / 2), h))
    ch = w / aspect
    return img.crop((0, round((h - ch) / 2), w, round((h + ch) / 2)))


@dataclass(frozen=True)
class VariantSpec:
    """One size/format a site serves a photo in."""

    site: str
    kind: str
    width: int
    height: int
    fmt: str  # "jpeg" | "webp"
    crop: float | None = None  # centre-crop aspect before resizing
    watermark: bool = False
    quality: int = 85


def _h(width: int) -> int:
    return round(width * CANON_H / CANON_W)


ZILLOW_WIDTHS: tuple[int, ...] = (192, 384, 576, 768, 960, 1152, 1344, 1536)

VARIANTS: dict[tuple[str, str], VariantSpec] = {}
for _w in ZILLOW_WIDTHS:
    VARIANTS[("zillow", f"cc_ft_{_w}.jpg")] = VariantSpec(
        "zillow", f"cc_ft_{_w}", _w, _h(_w), "jpeg", quality=85)
    VARIANTS[("zillow", f"cc_ft_{_w}.webp")] = VariantSpec(
        "zillow", f"cc_ft_{_w}", _w, _h(_w), "webp", quality=80)
VARIANTS[("redfin", "bigphoto")] = VariantSpec(
    "redfin", "bigphoto", 1280, _h(1280), "jpeg", watermark=True, quality=82)
VARIANTS[("redfin", "mbphotov3")] = VariantSpec(
    "redfin", "mbphotov3", 1080, 771, "jpeg", crop=1080 / 771, quality=80)
VARIANTS[("redfin", "islphoto")] = VariantSpec("redfin", "islphoto", 640, _h(640), "jpeg")
VARIANTS[("redfin", "thumbnail")] = VariantSpec("redfin", "thumbnail", 320, _h(320), "jpeg")
for _k, _w in (("t", 200), ("m", 640), ("l", 1024), ("o", CANON_W)):
    VARIANTS[("phoenixmls", _k)] = VariantSpec("phoenixmls", _k, _w, _h(_w), "jpeg", quality=90)

# The variant an adapter must choose per site (docs/simulator.md, best_per_site).
BEST_KIND: dict[str, tuple[str, str]] = {
    "zillow": ("zillow", "cc_ft_1536.jpg"),
    "redfin": ("redfin", "bigphoto"),
    "phoenixmls": ("phoenixmls", "o"),
}

# Variants whose geometry or overlay differs from a plain resize: the generator checks these
# (plus the smallest resize) on small renders.
CHECKED_VARIANTS: tuple[tuple[str, str], ...] = (
    ("redfin", "bigphoto"), ("redfin", "mbphotov3"), ("zillow", "cc_ft_192.jpg"),
    ("phoenixmls", "t"),
)


def make_variant(canonical: Image.Image, spec: VariantSpec, scale: float = 1.0) -> Image.Image:
    """Apply a variant's geometry/overlay to a canonical render (``scale`` < 1 for the small
    renders used in validation: sizes shrink, proportions stay)."""
    img = canonical
    if spec.crop is not None:
        img = centre_crop(img, spec.crop)
    size = (max(8, round(spec.width * scale)), max(8, round(spec.height * scale)))
    if img.size != size:
        img = img.resize(size, Image.Resampling.LANCZOS if scale == 1.0 else
                         Image.Resampling.BILINEAR)
    if spec.watermark:
        img = watermark(img)
    return img


def encode(img: Image.Image, fmt: str, quality: int) -> bytes:
    """Encode as the CDN would (no metadata)."""
    buf = io.BytesIO()
    if fmt == "webp":
        img.save(buf, "WEBP", quality=quality, method=2)
    else:
        img.save(buf, "JPEG", quality=quality, optimize=False)
    return buf.getvalue()


def _as_int(h: imagehash.ImageHash) -> int:
    """The hash's bits as an int, first bit most significant (``int(str(h), 16)``, faster)."""
    return int.from_bytes(np.packbits(h.hash.ravel()).tobytes(), "big")


def hashes(img: Image.Image) -> tuple[int, int]:
    """(pHash, dHash) as 64-bit ints, the same functions the engine's dedup uses. Both start
    from the grayscale image; converting once up front gives them identical input."""
    gray = img if img.mode == "L" else img.convert("L")
    return _as_int(imagehash.phash(gray)), _as_int(imagehash.dhash(gray))


def distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()
