"""Local processes of the stack: Prefect server, simulator, workers, as supervised subprocesses.

One implementation for the demo (``make demo`` / ``make down``), the tests and the benchmarks.
Every process is started in its own session with its pid recorded, and stopped by that pid:
SIGTERM to its process group, then SIGKILL after a grace period (a Prefect worker can linger
past 30 s after SIGTERM; see shared/notes/prefect.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Proc:
    """A started subprocess, its log file and how to stop it."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace_s: float = 10.0) -> None:
        stop_pid(self.pid, grace_s)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def stop_pid(pid: int, grace_s: float = 10.0) -> None:
    """SIGTERM the process group of ``pid``, SIGKILL it if still there after ``grace_s``."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
                # a zombie child of ours still "exists"; reap it if we can
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:
                pass
            except ProcessLookupError:
                return
            time.sleep(0.1)


def spawn(name: str, argv: list[str], log: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Proc:
    log.parent.mkdir(parents=True, exist_ok=True)
    out = log.open("ab")
    popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                             start_new_session=True)
    out.close()
    return Proc(name, popen, log)


def wait_http(url: str, timeout_s: float, proc: Proc | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    tail = proc.tail() if proc else ""
    raise TimeoutError(f"{url} not healthy after {timeout_s:.0f}s\n{tail}")


@dataclass
class Stack:
    """A Prefect home, server and the processes started against it."""

    home: Path
    port: int
    database_url: str | None = None
    procs: list[Proc] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment every Prefect client and worker of this stack runs with."""
        env = dict(os.environ)
        env.update({
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_CLIENT_ENABLE_METRICS": "false",
            "PREFECT_LOGGING_LEVEL": env.get("PREFECT_LOGGING_LEVEL", "INFO"),
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        })
        if self.database_url:
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = self.database_url
        env.update(extra or {})
        return env

    def start_server(self, timeout_s: float = 60.0) -> Proc:
        if port_in_use(self.port):
            raise RuntimeError(f"port {self.port} is taken; is another Prefect server running?")
        self.home.mkdir(parents=True, exist_ok=True)
        proc = spawn("prefect-server",
                     [str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                      "--port", str(self.port), "--analytics-off"],
                     self.home / "server.log", env=self.env())
        self.procs.append(proc)
        wait_http(f"{self.api_url}/health", timeout_s, proc)
        return proc

    def start_worker(self, pool: str, limit: int, project_dir: Path, name: str,
                     extra_env: dict[str, str] | None = None) -> Proc:
        # the worker polls for runs every 2 s, not Prefect's 10 s: each child run a parent
        # submits would otherwise wait up to 10 s for a worker to notice it
        env = self.env({"PHX_PROJECT_DIR": str(project_dir),
                        "PREFECT_WORKER_QUERY_SECONDS": "2", **(extra_env or {})})
        proc = spawn(f"worker-{name}",
                     [str(VENV_BIN / "prefect"), "worker", "start", "--pool", pool,
                      "--limit", str(limit), "--name", name, "--type", "process"],
                     self.home / f"worker-{name}.log", env=env, cwd=project_dir)
        self.procs.append(proc)
        return proc

    def run(self, argv: list[str], cwd: Path | None = None, timeout_s: float = 300,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command against this stack; raise with its output if it fails."""
        result = subprocess.run(argv, env=self.env(extra_env), cwd=cwd, capture_output=True,
                                text=True, timeout=timeout_s, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n"
                               f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()


class WriteProbe:
    """One small write to the Prefect API every second (a variable update), timed: shows
    whether the server stalls its writes while a job runs (on SQLite, Prefect 3.8's server
    has stalled every write for its 60 s busy timeout under heavy task-run traffic).

    Runs in a thread until :meth:`stop`; ``worst`` is the slowest write in seconds, and a
    write that failed or timed out counts as its full timeout."""

    NAME = "phx-write-probe"

    def __init__(self, api_url: str, interval_s: float = 1.0, timeout_s: float = 120.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.samples: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="phx-write-probe", daemon=True)

    def start(self) -> WriteProbe:
        self._write(f"{self.api_url}/variables/", "POST", {"name": self.NAME, "value": 0},
                    ok_codes=(201, 409, 422))
        self._thread.start()
        return self

    def _write(self, url: str, method: str, body: dict, ok_codes: tuple[int, ...]) -> None:
        request = urllib.request.Request(url, method=method, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s):
                pass
        except urllib.error.HTTPError as exc:
            if exc.code not in ok_codes:
                raise

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.interval_s):
            n += 1
            started = time.monotonic()
            try:
                self._write(f"{self.api_url}/variables/name/{self.NAME}", "PATCH",
                            {"value": n}, ok_codes=())
                self.samples.append(time.monotonic() - started)
            except (OSError, urllib.error.HTTPError) as exc:
                self.samples.append(max(time.monotonic() - started, self.timeout_s))
                self.failures.append(f"{type(exc).__name__}: {exc}"[:200])

    def stop(self) -> WriteProbe:
        self._stop.set()
        self._thread.join(self.timeout_s + 5)
        return self

    @property
    def worst(self) -> float:
        return max(self.samples, default=0.0)

    def summary(self) -> str:
        if not self.samples:
            return "API write probe: no sample"
        ordered = sorted(self.samples)
        p50 = ordered[len(ordered) // 2]
        return (f"API write probe: {len(ordered)} writes, p50 {p50 * 1000:.0f} ms, slowest "
                f"{self.worst:.2f} s, {len(self.failures)} failed")
