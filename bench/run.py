"""Every benchmark, one after the other (``make bench``); each prints its own ratios.

    .venv/bin/python -m bench.run [--quick]

``--quick`` uses smaller sizes (seconds instead of minutes) for a smoke run. The Prefect
latency benchmark on PostgreSQL, and the end-to-end benchmark's scale pass, run when a
PostgreSQL server is installed (``scripts/setup.sh --postgres``).
"""

from __future__ import annotations

import argparse
import glob
import subprocess
import sys


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    quick = args.quick
    runs = [
        ["bench.standardize", "--reps", "1" if quick else "3"],
        ["bench.dedup_index", "--sizes", "10000" if quick else "10000,100000,1000000"],
        ["bench.downloads", "--reps", "1" if quick else "3"],
        ["bench.prefect_latency", "--runs", "10" if quick else "40"],
    ]
    if glob.glob("/usr/lib/postgresql/*/bin/postgres"):
        runs.append(["bench.prefect_latency", "--postgres", "--runs", "10" if quick else "40"])
    # end to end (issue #9): --quick is 3 sample properties and no scale pass; the full run
    # measures the sample and 100 generated properties, then 100 and 1,000 on PostgreSQL
    runs.append(["bench.e2e", "--quick"] if quick else ["bench.e2e"])
    failed = []
    for argv in runs:
        print(f"\n== python -m {' '.join(argv)}", flush=True)
        if subprocess.run([sys.executable, "-m", *argv]).returncode != 0:
            failed.append(argv[0])
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
