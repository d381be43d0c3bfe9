"""``phx-images dedup DIR [--json]``: group near-duplicate images found under a folder.

Same definition as the pipeline (pHash <= 8 AND dHash <= 10 by default, exact recall), so an
operator can check a folder of photos by hand. Files that are not acceptable images are skipped
with a note on stderr, never fatal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", metavar="DIR", help="folder to scan (recursively)")
    parser.add_argument("--json", action="store_true", help='print {"groups": [[path, ...]]}')
    parser.add_argument("--phash", type=int, default=None, help="pHash threshold (default 8)")
    parser.add_argument("--dhash", type=int, default=None, help="dHash threshold (default 10)")


def run(args: argparse.Namespace) -> int:
    from phx_images.images import BadImage, group_near_duplicates, perceptual_hashes
    from phx_images.images.inspect import inspect
    from phx_images.settings import ImageSettings

    settings = ImageSettings()
    root = args.directory
    if not os.path.isdir(root):
        print(f"phx-images dedup: not a directory: {root}", file=sys.stderr)
        return 2
    phash_t = settings.phash_threshold if args.phash is None else args.phash
    dhash_t = settings.dhash_threshold if args.dhash is None else args.dhash
    items: list[tuple[str, int, int]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in sorted(filenames):
            path = os.path.join(dirpath, filename)
            rel = os.path.relpath(path, root)
            if not os.path.isfile(path):
                continue
            try:
                with open(path, "rb") as fh:
                    data = fh.read(settings.max_pixels)  # bounded: no photo is that big
                inspect(data, max_pixels=settings.max_pixels, decode=False)
                phash, dhash = perceptual_hashes(data, max_pixels=settings.max_pixels)
            except BadImage as exc:
                print(f"skipped {rel}: {exc.reason}", file=sys.stderr)
                continue
            except OSError as exc:
                print(f"skipped {rel}: {exc.strerror or exc}", file=sys.stderr)
                continue
            items.append((rel, phash, dhash))
    groups = group_near_duplicates(items, phash_t, dhash_t)
    if args.json:
        print(json.dumps({"groups": groups}))
    else:
        print(f"{len(items)} images, {len(groups)} groups of near-duplicates")
        for i, group in enumerate(groups, 1):
            print(f"group {i}:")
            for rel in group:
                print(f"  {rel}")
    return 0
