"""A throw-away PostgreSQL server for the Prefect tests (Debian's postgresql package).

Started in a temporary data directory on an ephemeral port, as the ``postgres`` system user
(the server refuses to run as root), with a database for Prefect and the ``pg_trgm``
extension Prefect wants. ``scripts/setup.sh --postgres`` (run by ``make test``) installs it.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flows.stack import free_port


def _installed(name: str) -> list[str]:
    return sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))


POSTGRES_INSTALLED = bool(_installed("postgres"))


def _bin(name: str) -> str:
    found = _installed(name)
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run `scripts/setup.sh --postgres` "
                           "(make test does)")
    return found[-1]


def _as_postgres(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *argv], check=True, capture_output=True, text=True,
                          **kwargs)  # type: ignore[call-overload]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield an asyncpg URL for a fresh database ``prefect``; stop and delete on exit.

    The directory is made outside pytest's private (0700) temp tree: the ``postgres`` user
    must be able to reach it."""
    workdir = Path(tempfile.mkdtemp(prefix="phx-pg-"))
    workdir.chmod(0o755)
    data = workdir / "pgdata"
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres", "postgres")
    port = free_port()
    _as_postgres([_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8"])
    _as_postgres([_bin("pg_ctl"), "-D", str(data), "-l", str(workdir / "pg.log"), "-w",
                  "-o", f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1", "start"])
    try:
        psql = [_bin("psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-v",
                "ON_ERROR_STOP=1"]
        deadline = time.monotonic() + 30
        while True:
            try:
                _as_postgres([*psql, "-c", "select 1"])
                break
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        _as_postgres([*psql, "-c", "CREATE DATABASE prefect"])
        _as_postgres([*psql, "-c", "CREATE DATABASE phx"])  # the project's own (ledger)
        _as_postgres([*psql, "-d", "prefect", "-c", "CREATE EXTENSION IF NOT EXISTS pg_trgm"])
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/prefect"
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", _bin("pg_ctl"), "-D", str(data),
                        "-m", "immediate", "stop"] if os.geteuid() == 0 else
                       [_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       check=False, capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)
