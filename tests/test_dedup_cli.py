"""``phx-images dedup DIR --json``: groups of near-duplicates, non-images skipped, bad dir."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.image_helpers import bomb_png, encode, photo

ROOT = Path(__file__).resolve().parents[1]


# The subcommand exactly as phx_images.cli wires it (add_arguments + run), in a real process.
# Built alone so that another subcommand's import failing cannot fail this test.
RUNNER = (
    "import argparse, sys\n"
    "from phx_images.commands import dedup\n"
    "parser = argparse.ArgumentParser(prog='phx-images dedup')\n"
    "dedup.add_arguments(parser)\n"
    "sys.exit(dedup.run(parser.parse_args(sys.argv[1:])))\n"
)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", RUNNER, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_groups_and_skips(tmp_path: Path) -> None:
    a, b = photo(1, (1200, 800)), photo(2, (1200, 800))
    (tmp_path / "sub").mkdir()
    (tmp_path / "a_big.jpg").write_bytes(encode(a, "JPEG"))
    (tmp_path / "sub" / "a_small.webp").write_bytes(encode(a.resize((600, 400)), "WEBP"))
    (tmp_path / "a.png").write_bytes(encode(a.resize((900, 600)), "PNG"))
    (tmp_path / "b.jpg").write_bytes(encode(b, "JPEG"))
    (tmp_path / "b copy.jpg").write_bytes(encode(b, "JPEG", quality=60))
    (tmp_path / "alone.jpg").write_bytes(encode(photo(3, (800, 600)), "JPEG"))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    result = _cli(str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    groups = sorted(sorted(g) for g in json.loads(result.stdout)["groups"])
    assert groups == [["a.png", "a_big.jpg", "sub/a_small.webp"], ["b copy.jpg", "b.jpg"]]
    assert "skipped notes.txt" in result.stderr and "skipped bomb.png" in result.stderr


def test_missing_directory(tmp_path: Path) -> None:
    result = _cli(str(tmp_path / "nope"), "--json")
    assert result.returncode != 0 and "not a directory" in result.stderr
    assert result.stdout == ""
