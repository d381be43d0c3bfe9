"""Helpers for the image/store tests: synthetic photos and a local S3 (moto) server.

Synthetic photos are smooth gradients plus shapes seeded by ``seed``, so two seeds give
different hashes while resizes/recompressions of one seed stay near-duplicates.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageDraw

from phx_images.images import Downloaded, inspect
from phx_images.settings import ImageSettings

VENV_BIN = Path(sys.executable).parent


def photo(seed: int, size: tuple[int, int] = (1536, 1024), mode: str = "RGB") -> Image.Image:
    """A deterministic, photo-like (smooth + edges) test image."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(0.5, 4.0), rng.uniform(0.5, 4.0), rng.uniform(0, 6.28)
        channels.append(127 + 100 * np.sin(fx * x / w * 6.28 + phase) * np.cos(fy * y / h * 6.28))
    arr = np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8)
    im = Image.fromarray(arr, "RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(6):
        x0, y0 = rng.integers(0, w - w // 4), rng.integers(0, h - h // 4)
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        draw.rectangle([x0, y0, x0 + rng.integers(w // 10, w // 4),
                        y0 + rng.integers(h // 10, h // 4)], fill=color)
    return im.convert(mode) if mode != "RGB" else im


def encode(im: Image.Image, fmt: str = "JPEG", **kwargs: object) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG" and "quality" not in kwargs:
        kwargs["quality"] = 85
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def jpeg(seed: int, size: tuple[int, int] = (1536, 1024), **kwargs: object) -> bytes:
    return encode(photo(seed, size), "JPEG", **kwargs)


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A small PNG whose header claims ``width`` x ``height`` (never decode it)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * width
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(min(height, 64))) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body)
            + chunk(b"IEND", b""))


def _drain(stream: IO[str]) -> None:
    for _line in stream:
        pass


@contextmanager
def moto_server() -> Iterator[str]:
    """Start ``moto_server`` on an ephemeral 127.0.0.1 port; yields its endpoint URL."""
    proc = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"},
    )
    try:
        deadline = time.monotonic() + 30
        endpoint = None
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            match = re.search(r"Running on (http://127\.0\.0\.1:\d+)", line)
            if match:
                endpoint = match.group(1)
                break
        if endpoint is None:
            raise RuntimeError("moto_server did not start")
        # moto logs every request; a pipe nobody reads fills up (64 KiB) and then blocks the
        # server's writes, which stalls every S3 call: keep draining it.
        threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def s3_options(endpoint: str) -> dict[str, object]:
    return {"key": "test", "secret": "test", "client_kwargs": {"endpoint_url": endpoint}}


def new_bucket(endpoint: str) -> str:
    """Create a fresh bucket; returns ``s3://bucket/prefix``."""
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_options(endpoint))
    bucket = f"phx-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    return f"s3://{bucket}/store"


def as_downloaded(data: bytes, url: str) -> Downloaded:
    """``data`` as the downloader would hand it over from ``url`` (checked by ``inspect``)."""
    return Downloaded(url, url, data, hashlib.sha256(data).hexdigest(),
                      inspect(data, max_pixels=ImageSettings().max_pixels))
