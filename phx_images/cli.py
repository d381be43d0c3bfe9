"""``phx-images``: the command line. Each subcommand lives in ``phx_images/commands/``.

Subcommands are imported lazily so that ``phx-images dedup`` does not pay for importing Prefect,
and a broken optional part cannot stop the others from running.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Each module has ``add_arguments(parser)`` and ``run(args)``,
# which returns the process exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "discover": ("phx_images.commands.discover", "find one property's listings and photos"),
    "dedup": ("phx_images.commands.dedup", "group near-duplicate images in a folder"),
    # Orchestration verbs live with the flows (they need Prefect; the engine does not).
    "extract": ("flows.commands", "submit an extraction run (Prefect deployment)"),
    "status": ("flows.commands", "show an extraction run's state and progress"),
    "cancel": ("flows.commands", "cancel an extraction run"),
    "setup": ("flows.commands", "create work pool, limits and blocks (idempotent)"),
    "metrics": ("flows.metrics", "serve Prometheus metrics: queue, workers, runs, sources"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phx-images",
        description="Collect, deduplicate, name and store listing photos (see README).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text)
        module = importlib.import_module(module_name)
        add = getattr(module, f"add_{name}_arguments", None) or module.add_arguments
        add(sub_parser)
        run = getattr(module, f"run_{name}", None) or module.run
        sub_parser.set_defaults(_run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
