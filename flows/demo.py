"""``make demo`` and ``make down``: the whole job end to end on the embedded default.

``up``: local Prefect server (SQLite) and the simulator as background processes, then setup
(pool, limits, blocks), ``prefect deploy --all``, a worker, one on-demand run over
``data/phx_homes.csv`` followed to its end, and the summary, UI address and gallery path.
Run it again and the second run downloads nothing. ``down`` stops what ``up`` started, by the
pids it recorded in ``.run/pids.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from flows.stack import Proc, Stack, WriteProbe, port_in_use, spawn, stop_pid, wait_http
from phx_images.settings import PHOTO_SOURCES, SOURCE_NAMES, Settings
from phx_sim.stats import politeness_bound

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / ".run"
PIDS = RUN / "pids.json"
PREFECT_PORT = int(os.environ.get("PHX_DEMO_PREFECT_PORT", "4200"))
SIM_PORT = int(os.environ.get("PHX_DEMO_SIM_PORT", "8700"))
WORKER_LIMIT = int(os.environ.get("PHX_DEMO_WORKER_LIMIT", "3"))


def _load_pids() -> dict[str, int]:
    try:
        return {k: int(v) for k, v in json.loads(PIDS.read_text()).items()}
    except (OSError, ValueError):
        return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _sim_env(path: Path) -> dict[str, str]:
    """The simulator's ``--write-env`` file (shell syntax, values quoted) as a dict."""
    env = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = "".join(shlex.split(value))
    return env


def sim_ceilings(settings: Settings) -> dict[str, float]:
    """Each simulator port's request ceiling in these settings (pages, then photo CDNs)."""
    ceilings = {name: settings.source(name).max_rps for name in SOURCE_NAMES}
    ceilings.update({f"{name}_photos": settings.source(name).asset_max_rps
                     for name in PHOTO_SOURCES})
    return ceilings


def _sim(path: str, method: str = "GET") -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{SIM_PORT}{path}", method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


def up(csv: Path) -> int:
    began = time.monotonic()
    RUN.mkdir(exist_ok=True)
    pids = {k: v for k, v in _load_pids().items() if _alive(v)}
    stack = Stack(home=RUN / "prefect-home", port=PREFECT_PORT)
    procs: list[Proc] = []
    if "prefect-server" not in pids:
        print(f"starting Prefect server on {stack.api_url} (SQLite in {stack.home})", flush=True)
        procs.append(stack.start_server(timeout_s=120))
    sim_env_file = RUN / "sim.env"
    if "simulator" not in pids:
        if port_in_use(SIM_PORT):
            print(f"port {SIM_PORT} is taken; set PHX_DEMO_SIM_PORT", file=sys.stderr)
            return 2
        print(f"starting the listing-site simulator on port {SIM_PORT}", flush=True)
        sim = spawn("simulator", [sys.executable, "-m", "phx_sim.cli", "--port", str(SIM_PORT),
                                  "--write-env", str(sim_env_file)],
                    RUN / "simulator.log", env=stack.env(), cwd=ROOT)
        procs.append(sim)
        wait_http(f"http://127.0.0.1:{SIM_PORT}/_sim/stats", 180, sim)
    pids.update({p.name: p.pid for p in procs})
    PIDS.write_text(json.dumps(pids, indent=2))

    env = _sim_env(sim_env_file)
    env["PHX_DATA_DIR"] = str(ROOT / "data")
    env["PHX_STORE_URL"] = str(ROOT / "data" / "property_images")
    prefect = str(Path(sys.executable).parent / "prefect")
    phx = str(Path(sys.executable).parent / "phx-images")
    print("setting up work pool, limits and blocks", flush=True)
    print(stack.run([phx, "setup"], cwd=ROOT, extra_env=env).stdout, end="")
    print("deploying (prefect deploy --all)", flush=True)
    stack.run([prefect, "--no-prompt", "deploy", "--all"], cwd=ROOT, extra_env=env)
    if "worker" not in pids:
        worker = stack.start_worker("phx-process", WORKER_LIMIT, ROOT, "worker", extra_env=env)
        pids[worker.name.removeprefix("worker-")] = worker.pid
        PIDS.write_text(json.dumps(pids, indent=2))
    print(f"running the on-demand deployment over {csv}", flush=True)
    _sim("/_sim/stats/reset", "POST")
    probe = WriteProbe(stack.api_url).start()
    started = time.monotonic()
    result = subprocess.run(
        [phx, "extract", "--csv", str(csv), "--wait", "--requester", "demo"],
        env=stack.env(env), cwd=ROOT, check=False,
    )
    took = time.monotonic() - started
    probe.stop()
    stats = _sim("/_sim/stats")
    # the simulator's environment names only where the sites are: ceilings are the settings'
    ceilings = sim_ceilings(Settings())
    bound, port = politeness_bound({k: v["requests"] for k, v in stats.items()
                                    if isinstance(v, dict) and "requests" in v}, ceilings)
    print()
    print(f"Run time:     {took:.0f} s; politeness bound {bound:.0f} s ({port} at "
          f"{ceilings.get(port, 0):g}/s); ratio {took / bound:.2f}" if bound else
          f"Run time:     {took:.0f} s (no request to any site)")
    print(f"Start-up:     {started - began:.0f} s (servers, setup, deploy, worker)")
    print(probe.summary())
    print(f"Prefect UI:   http://127.0.0.1:{PREFECT_PORT}")
    print(f"Gallery:      {ROOT / 'data' / 'property_images' / 'index.html'}")
    print("Stop it all:  make down")
    return result.returncode


def down() -> int:
    pids = _load_pids()
    if not pids:
        print("nothing to stop")
        return 0
    # workers first (they hold runs), the server last (everyone talks to it)
    order = sorted(pids, key=lambda n: {"worker": 0, "simulator": 1}.get(n, 2))
    for name in order:
        if _alive(pids[name]):
            print(f"stopping {name} (pid {pids[name]})", flush=True)
            stop_pid(pids[name], grace_s=15)
    PIDS.unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.demo")
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up")
    up_parser.add_argument("--csv", type=Path, default=ROOT / "data" / "phx_homes.csv")
    sub.add_parser("down")
    args = parser.parse_args(argv)
    return up(args.csv) if args.command == "up" else down()


if __name__ == "__main__":
    sys.exit(main())

