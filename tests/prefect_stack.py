"""A real Prefect stack for the orchestration tests: server, setup, deployments, workers.

Shared by the flow tests (``tests/test_flows_*.py``) through the ``stack`` fixture; also
usable for the multi-machine test with a PostgreSQL URL and S3 store settings.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from flows.stack import Stack, WriteProbe, free_port

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


class AlertReceiver:
    """A local webhook that records the bodies POSTed to it (the stuck-run alert's target)."""

    def __init__(self) -> None:
        self.received: list[str] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received.append(self.rfile.read(length).decode(errors="replace"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"

    def __enter__(self) -> AlertReceiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class PhxStack:
    """Server + setup + deploy, then workers on demand; stops everything it started."""

    def __init__(self, home: Path, engine_env: dict[str, str], database_url: str | None = None):
        self.stack = Stack(home=home, port=free_port(), database_url=database_url)
        self.engine_env = engine_env

    def start(self, project_dir: Path = ROOT) -> PhxStack:
        self.stack.start_server(timeout_s=120)
        # times one API write a second for as long as the stack runs (see test_flows.py)
        self.probe = WriteProbe(self.stack.api_url).start()
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
        run: dict[str, Any] = {"state_name": "never read"}
        while time.monotonic() < deadline:
            try:
                run = self.flow_run(run_id)
            except (TimeoutError, OSError):  # a server busy past the read timeout: poll again
                continue
            if run["state_type"] in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED"):
                return run
            time.sleep(1)
        raise TimeoutError(f"run {run_id} not final after {timeout_s}s: {run['state_name']}")

    def children(self, run_id: str) -> list[dict[str, Any]]:
        return self.api("POST", "/flow_runs/filter", {
            "flow_runs": {"parent_flow_run_id": {"any_": [run_id]}}, "limit": 200})

    def task_runs(self, flow_run_ids: list[str], name_prefix: str, count: int,
                  timeout_s: float = 60) -> list[dict[str, Any]]:
        """The task runs of these flow runs whose name starts with ``name_prefix``, once
        ``count`` of them are recorded in a final state (or the timeout passes).

        Task runs reach the API through the server's event pipeline (its task-run recorder
        consumes the engine's state events in batches), so a moment after their flow run has
        ended some may not be there yet, or not in their last state."""
        deadline = time.monotonic() + timeout_s
        while True:
            runs = [t for t in self.api("POST", "/task_runs/filter", {
                "flow_runs": {"id": {"any_": flow_run_ids}},
                "task_runs": {"name": {"like_": name_prefix}}, "limit": 200})
                if t["name"].startswith(name_prefix)]
            final = [t for t in runs if t["state_type"] in (
                "COMPLETED", "FAILED", "CANCELLED", "CRASHED")]
            if len(final) >= count or time.monotonic() > deadline:
                return runs
            time.sleep(1)

    def event_count(self, name: str, related_to: str, settle_s: float = 3,
                    timeout_s: float = 60) -> int:
        """How many ``name`` events name ``related_to`` among their related resources, read
        once the first has arrived and then ``settle_s`` more seconds passed (the server
        records events asynchronously). 0 after ``timeout_s`` without any."""
        body = {"filter": {"event": {"name": [name]}, "related": {"id": [related_to]}},
                "limit": 1}
        deadline = time.monotonic() + timeout_s
        while not self.api("POST", "/events/filter", body)["total"]:
            if time.monotonic() > deadline:
                return 0
            time.sleep(1)
        time.sleep(settle_s)
        return self.api("POST", "/events/filter", body)["total"]

    def scheduled_runs(self, deployment: str, timeout_s: float = 120) -> list[dict[str, Any]]:
        """The Scheduled runs the server's scheduler created for ``deployment`` (waits for
        the scheduler service's first pass)."""
        deployment_id = self.api("GET", f"/deployments/name/{deployment}")["id"]
        deadline = time.monotonic() + timeout_s
        while True:
            runs = self.api("POST", "/flow_runs/filter", {
                "deployments": {"id": {"any_": [deployment_id]}},
                "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}, "limit": 10})
            if runs or time.monotonic() > deadline:
                return runs
            time.sleep(2)

    def artifacts(self, run_id: str) -> dict[str, Any]:
        items = self.api("POST", "/artifacts/filter", {
            "artifacts": {"flow_run_id": {"any_": [run_id]}}})
        return {a["key"]: a for a in items if a.get("key")}

    def stop(self) -> None:
        if getattr(self, "probe", None) is not None:
            self.probe.stop()
        """Stop everything; keep the logs under .run/test-logs/ for whoever reads a failure."""
        self.stack.stop()
        keep = ROOT / ".run" / "test-logs" / self.stack.home.name
        keep.mkdir(parents=True, exist_ok=True)
        for log in self.stack.home.glob("*.log"):
            shutil.copy(log, keep / log.name)
