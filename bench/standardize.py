"""Benchmark: our standardize vs the earlier system's (RGB, LANCZOS to 1024, PNG optimize=True).

Run: .venv/bin/python bench/standardize.py [--reps 3]

Inputs are real photographs shipped with scikit-image, rendered as listing-site variants:
1536x1024 JPEG q85 (Zillow's largest), 1024x683 JPEG with EXIF (already fits: our lossless
path), 1600x1067 PNG. Sizes and times are measured in this run; ratios are earlier / ours.
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import statistics
import time

from PIL import Image

from phx_images.images.standardize import standardize
from phx_images.settings import ImageSettings

PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg",
          "retina.jpg", "hubble_deep_field.jpg", "immunohistochemistry.png"]


def earlier(data: bytes) -> bytes:
    """What the earlier system did (from the notes)."""
    im = Image.open(io.BytesIO(data)).convert("RGB")
    im.thumbnail((1024, 1024), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def inputs() -> dict[str, list[bytes]]:
    import skimage

    folder = os.path.join(os.path.dirname(skimage.__file__), "data")
    files = [f for f in sorted(glob.glob(os.path.join(folder, "*")))
             if os.path.basename(f) in PHOTOS]
    out: dict[str, list[bytes]] = {"jpeg 1536x1024": [], "jpeg 1024x683 +EXIF": [],
                                   "png 1600x1067": []}
    exif = Image.Exif()
    exif[0x010F] = "Camera"
    for path in files:
        im = Image.open(path).convert("RGB")
        for key, size, fmt, extra in (("jpeg 1536x1024", (1536, 1024), "JPEG", {"quality": 85}),
                                      ("jpeg 1024x683 +EXIF", (1024, 683), "JPEG",
                                       {"quality": 85, "exif": exif.tobytes()}),
                                      ("png 1600x1067", (1600, 1067), "PNG", {})):
            buf = io.BytesIO()
            im.resize(size, Image.Resampling.LANCZOS).save(buf, fmt, **extra)
            out[key].append(buf.getvalue())
    return out


def timed(fn, data: bytes, reps: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(reps):
        t = time.perf_counter()
        size = len(fn(data))
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000, size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    settings = ImageSettings()
    print(f"{'input':<22} {'n':>2} {'earlier ms':>10} {'ours ms':>8} {'speed-up':>8} "
          f"{'earlier KiB':>11} {'ours KiB':>9} {'smaller':>8}")
    for label, blobs in inputs().items():
        e_ms, e_kb, o_ms, o_kb = [], [], [], []
        for data in blobs:
            ms, size = timed(earlier, data, args.reps)
            e_ms.append(ms)
            e_kb.append(size / 1024)
            ms, size = timed(lambda d: standardize(d, settings).data, data, args.reps)
            o_ms.append(ms)
            o_kb.append(size / 1024)
        em, om = statistics.mean(e_ms), statistics.mean(o_ms)
        ek, ok = statistics.mean(e_kb), statistics.mean(o_kb)
        print(f"{label:<22} {len(blobs):>2} {em:>10.0f} {om:>8.1f} {em / om:>7.1f}x "
              f"{ek:>11.0f} {ok:>9.0f} {ek / ok:>7.1f}x")


if __name__ == "__main__":
    main()
