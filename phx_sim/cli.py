"""``phx-sim``: run the simulator in the foreground, or print the sample CSV.

Why print ``name url`` lines then ``ready``: scripts (demo, benchmarks) start it in the
background and wait for ``ready`` before reading the URLs, with no fixed ports involved.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from phx_sim.context import DEFAULT_ASSESSOR_TOKEN
from phx_sim.extra import DEFAULT_EXTRA_PHOTOS
from phx_sim.faults import FaultError

MAX_FAULTS_FILE = 1024 * 1024


def _faults_arg(text: str) -> dict[str, Any]:
    """``--faults`` accepts inline JSON or ``@path`` to a JSON file."""
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            if path.stat().st_size > MAX_FAULTS_FILE:
                raise argparse.ArgumentTypeError(f"faults file {path} is larger than 1 MiB")
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise argparse.ArgumentTypeError(f"cannot read faults file {path}: {exc}") from exc
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--faults is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--faults must be a JSON object of site -> knobs")
    return value


def _seed_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"seed must be an integer, got {text!r}") from exc
    if not 0 <= value < 2**31:
        raise argparse.ArgumentTypeError("seed must be in [0, 2**31)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phx-sim", description="Offline simulator of the listing sites (docs/simulator.md)."
        " `phx-sim csv` prints the sample CSV instead.")
    parser.add_argument("--port", type=int, default=0,
                        help="control port P; sites on P+1..P+10 (0: free ports everywhere)")
    parser.add_argument("--seed", type=_seed_arg, default=7)
    parser.add_argument("--faults", type=_faults_arg, default=None,
                        help="JSON object {site: {knob: value}} or @file")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="render/catalog cache (default data/sim-cache)")
    parser.add_argument("--write-env", type=Path, default=None,
                        help="write the PHX_ settings for this instance to FILE")
    parser.add_argument("--assessor-token", default=DEFAULT_ASSESSOR_TOKEN)
    _extra_args(parser)
    return parser


def _count_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _extra_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--extra-properties", type=_count_arg, default=0, metavar="N",
                        help="append N generated properties to the 32 sample ones (default 0)")
    parser.add_argument("--extra-photos", type=_count_arg, default=DEFAULT_EXTRA_PHOTOS,
                        metavar="K", help="photos per generated property (default "
                        f"{DEFAULT_EXTRA_PHOTOS}; 0 allowed)")


def write_env(path: Path, env: dict[str, str]) -> None:
    """Write ``KEY='value'`` lines: readable by pydantic-settings (.env) and by ``source``."""
    lines = []
    for key, value in env.items():
        if "'" in value or "\n" in value:
            raise ValueError(f"cannot quote {key} for an env file")
        lines.append(f"{key}='{value}'")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def csv_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="phx-sim csv", description="Print the sample properties CSV (then the generated"
        " extra properties, if any).")
    parser.add_argument("--seed", type=_seed_arg, default=7)
    parser.add_argument("--cache-dir", type=Path, default=None)
    _extra_args(parser)
    args = parser.parse_args(argv)
    from phx_sim.catalog import load_csv_text

    try:
        text = load_csv_text(args.seed, args.cache_dir, args.extra_properties,
                             args.extra_photos)
    except ValueError as exc:
        parser.error(str(exc))
    sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "csv":
        return csv_main(argv[1:])
    args = build_parser().parse_args(argv)
    from phx_sim.simulator import Simulator

    try:
        sim = Simulator(seed=args.seed, faults=args.faults, cache_dir=args.cache_dir,
                        port=args.port, assessor_token=args.assessor_token,
                        extra_properties=args.extra_properties, extra_photos=args.extra_photos)
    except (FaultError, ValueError) as exc:
        print(f"phx-sim: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        sim.start()
    except RuntimeError as exc:
        print(f"phx-sim: {exc}", file=sys.stderr)
        return 1
    try:
        if args.write_env is not None:
            try:
                write_env(args.write_env, sim.env())
            except (OSError, ValueError) as exc:
                print(f"phx-sim: cannot write {args.write_env}: {exc}", file=sys.stderr)
                return 1
        for name, url in sim.urls.items():
            print(f"{name} {url}")
        print("ready", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
