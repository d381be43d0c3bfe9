"""The multi-machine profile: Prefect on PostgreSQL, store and results on S3, two workers that
share no local disk, each from its own working copy with its own home and scratch folders.

The workers are given nothing but the API URL, their scratch folder and their name: source
URLs, the store location and credentials reach them through the blocks saved by setup, as they
would on another machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.image_helpers import moto_server
from tests.postgres import POSTGRES_INSTALLED, postgres_server
from tests.prefect_stack import PhxStack, copy_project

pytestmark = [
    pytest.mark.prefect, pytest.mark.slow, pytest.mark.multimachine,
    pytest.mark.skipif(not POSTGRES_INSTALLED,
                       reason="PostgreSQL not installed: `make test` installs it "
                       "(scripts/setup.sh --postgres)"),
]


def test_one_run_is_spread_over_two_workers(sim: object,
                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    import s3fs

    addresses = [p["full_address"] for p in sim.truth()["properties"][:4]]  # type: ignore[attr-defined]
    with postgres_server() as database_url, moto_server() as endpoint:
        options = {"key": "testing", "secret": "testing",
                   "client_kwargs": {"endpoint_url": endpoint}}
        s3 = s3fs.S3FileSystem(**options)
        s3.mkdir("phx")
        env = dict(sim.env())  # type: ignore[attr-defined]
        env.update({
            # the request ledger every machine shares (setup saves it as a secret block)
            "PHX_DATABASE_URL": database_url.replace("+asyncpg", "").replace(
                "/prefect", "/phx"),
            "PHX_STORE_URL": "s3://phx/images",
            "PHX_STORE_OPTIONS": json.dumps(options),
            "PHX_ORCHESTRATION__RESULT_STORAGE_BLOCK": "shared-result-storage/phx-results",
            "PHX_ORCHESTRATION__RESULT_STORAGE_URL": "s3://phx/results",
            "PHX_ORCHESTRATION__POLL_INTERVAL_S": "1",
        })
        machines = {}
        for name in ("machine-a", "machine-b"):
            base = tmp_path_factory.mktemp(name)
            machines[name] = {"code": copy_project(base / "checkout"),
                              "home": base / "prefect-home", "scratch": base / "scratch"}
        stack = PhxStack(machines["machine-a"]["home"], env, database_url=database_url)
        try:
            stack.start(project_dir=machines["machine-a"]["code"])
            for name, machine in machines.items():
                machine["scratch"].mkdir()
                stack.stack.start_worker(
                    "phx-process", 2, machine["code"], name,
                    extra_env={"PREFECT_HOME": str(machine["home"]),
                               "PHX_DATA_DIR": str(machine["scratch"]),
                               "PHX_WORKER_NAME": name,
                               # a child run per property, so four spread over both machines
                               "PHX_ORCHESTRATION__PROPERTIES_PER_CHILD": "1"},
                )
            # the scheduler works on PostgreSQL too (SQLAlchemy 2.1 broke it: pinned < 2.1)
            assert stack.scheduled_runs("refresh-photos/nightly"), "no nightly run scheduled"
            run_id = stack.submit(addresses=addresses, requester="multi")
            run = stack.wait_final(run_id, timeout_s=900)
            assert run["state_type"] == "COMPLETED", run["state"]
            rows = stack.artifacts(run_id)["extraction-results"]["data"]
            rows = json.loads(rows) if isinstance(rows, str) else rows
            workers = {r["worker"] for r in rows}
            assert workers == {"machine-a", "machine-b"}, workers
        finally:
            stack.stop()
        manifests = s3.glob("phx/images/processed/*/manifest.json")
        assert len(manifests) == len(addresses)
        assert s3.glob("phx/results/*"), "download cache results are on shared storage"
        for machine in machines.values():
            stray = [p for p in Path(machine["scratch"]).rglob("*") if p.is_file()
                     and p.suffix in (".jpg", ".webp", ".png")]
            assert not stray, f"images written to a worker's local disk: {stray[:3]}"
