"""A real Prefect stack for the orchestration tests: server, setup, deployments, workers.

Shared by the flow tests (``tests/test_flows_*.py``) through the ``stack`` fixture; also
usable for the multi-machine test with a PostgreSQL URL and S3 store settings.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from flows.stack import Stack, free_port

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"


def copy_project(dest: Path) -> Path:
    """A separate working copy of the project (code only: no venv, data or run state)."""
    ignore = shutil.ignore_patterns(".venv", ".git", "data", ".run", "__pycache__",
                                    ".pytest_cache", ".ruff_cache", "*.egg-info", "bench")
    shutil.copytree(ROOT, dest, ignore=ignore)
    (dest / "data").mkdir(exist_ok=True)
    shutil.copy(ROOT / "data" / "phx_homes.csv", dest / "data" / "phx_homes.csv")
    return dest


class PhxStack:
    """Server + setup + deploy, then workers on demand; stops everything it started."""

    def __init__(self, home: Path, engine_env: dict[str, str], database_url: str | None = None):
        self.stack = Stack(home=home, port=free_port(), database_url=database_url)
        self.engine_env = engine_env

    def start(self, project_dir: Path = ROOT) -> PhxStack:
        self.stack.start_server(timeout_s=120)
        self.cli(["phx-images", "setup"], cwd=project_dir)
        self.cli(["prefect", "--no-prompt", "deploy", "--all"], cwd=project_dir)
        return self

    def cli(self, argv: list[str], cwd: Path = ROOT, timeout_s: float = 300,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return self.stack.run([str(VENV_BIN / argv[0]), *argv[1:]], cwd=cwd,
                              timeout_s=timeout_s,
                              extra_env={**self.engine_env, **(extra_env or {})})

    def worker(self, name: str, limit: int = 3, project_dir: Path = ROOT,
               extra_env: dict[str, str] | None = None) -> Any:
        return self.stack.start_worker("phx-process", limit, project_dir, name,
                                       extra_env={**self.engine_env, **(extra_env or {})})

    def submit(self, **parameters: Any) -> str:
        """``prefect deployment run`` with JSON parameters; returns the flow run id."""
        argv = ["prefect", "deployment", "run", "extract-photos/on-demand"]
        for key, value in parameters.items():
            argv += ["--param", f"{key}={json.dumps(value)}"]
        out = self.cli(argv).stdout
        for line in out.splitlines():
            if "UUID:" in line:
                return line.split("UUID:")[1].strip()
        raise AssertionError(f"no run id in output:\n{out}")

    def api(self, method: str, path: str, body: Any = None) -> Any:
        import urllib.request

        request = urllib.request.Request(
            f"{self.stack.api_url}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def flow_run(self, run_id: str) -> dict[str, Any]:
        return self.api("GET", f"/flow_runs/{run_id}")

    def wait_final(self, run_id: str, timeout_s: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run = self.flow_run(run_id)
            if run["state_type"] in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED"):
                return run
            time.sleep(1)
        raise TimeoutError(f"run {run_id} not final after {timeout_s}s: {run['state_name']}")

    def children(self, run_id: str) -> list[dict[str, Any]]:
        return self.api("POST", "/flow_runs/filter", {
            "flow_runs": {"parent_flow_run_id": {"any_": [run_id]}}, "limit": 200})

    def task_runs(self, flow_run_ids: list[str]) -> list[dict[str, Any]]:
        return self.api("POST", "/task_runs/filter", {
            "flow_runs": {"id": {"any_": flow_run_ids}}, "limit": 200})

    def artifacts(self, run_id: str) -> dict[str, Any]:
        items = self.api("POST", "/artifacts/filter", {
            "artifacts": {"flow_run_id": {"any_": [run_id]}}})
        return {a["key"]: a for a in items if a.get("key")}

    def stop(self) -> None:
        """Stop everything; keep the logs under .run/test-logs/ for whoever reads a failure."""
        self.stack.stop()
        keep = ROOT / ".run" / "test-logs" / self.stack.home.name
        keep.mkdir(parents=True, exist_ok=True)
        for log in self.stack.home.glob("*.log"):
            shutil.copy(log, keep / log.name)
