"""``phx-sim`` as a process: ready line, env file, clean exit on SIGTERM, refused bad input."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from curl_cffi import requests

from phx_sim import PORT_NAMES, Simulator


def _start(args: list[str], cache: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "phx_sim.cli", *args, "--cache-dir",
                             str(cache)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_cli_runs_and_stops_cleanly(tmp_path: Path, sim_cache_dir: Path) -> None:
    env_file = tmp_path / "sim.env"
    proc = _start(["--port", "0", "--seed", "7", "--write-env", str(env_file),
                   "--faults", '{"assessor": {"latency_ms": [1, 2]}}',
                   "--assessor-token", "tok"], sim_cache_dir)
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline().strip()  # type: ignore[union-attr]
            if not line or line == "ready":
                break
            lines.append(line)
        assert line == "ready", proc.stderr.read()  # type: ignore[union-attr]
        urls = dict(line.split(" ", 1) for line in lines)
        assert list(urls) == list(PORT_NAMES)
        assert all(u.startswith("http://127.0.0.1:") for u in urls.values())
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert env["PHX_ZILLOW__BASE_URL"] == f"'{urls['zillow']}'"
        assert env["PHX_ASSESSOR__TOKEN"] == "'tok'"
        faults = requests.get(urls["control"] + "/_sim/faults").json()
        assert faults == {"assessor": {"latency_ms": [1.0, 2.0]}}
        r = requests.get(urls["assessor"] + "/parcel/207-22-123", headers={"AUTHORIZATION": "tok"})
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
    assert code == 0


@pytest.mark.parametrize("args, message", [
    (["--faults", "{broken"], "not valid JSON"),
    (["--faults", '{"zillow": {"reset_rate": 5}}'], "reset_rate"),
    (["--faults", "@/nonexistent/faults.json"], "cannot read faults file"),
    (["--seed", "-3"], "seed"),
])
def test_cli_refuses_bad_arguments(args: list[str], message: str, sim_cache_dir: Path) -> None:
    proc = _start(args, sim_cache_dir)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert message in err


def test_env_points_settings_at_the_simulator(sim: object, tmp_path: Path) -> None:
    from tests.conftest import settings_for

    settings = settings_for(sim, tmp_path)
    urls = sim.urls  # type: ignore[attr-defined]
    assert settings.zillow.base_url == urls["zillow"]
    assert settings.redfin.asset_urls == [urls["redfin_photos"]]
    assert settings.assessor.token is not None
    assert urls["elsewhere"] not in settings.allow_private_origins
    assert urls["phoenixmls_photos"] in settings.allow_private_origins
    assert json.loads(sim.env()["PHX_ALLOW_PRIVATE_ORIGINS"]) == settings.allow_private_origins  # type: ignore[attr-defined]


def test_fixed_port_layout(sim_cache_dir: Path) -> None:
    """``port=P`` puts the sites on P+1..P+10 (a free block is probed, never hard-coded)."""
    for _ in range(5):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base > 65000:
            continue
        try:
            sim = Simulator(cache_dir=sim_cache_dir, port=base).start()
        except RuntimeError:
            continue  # part of the block was taken meanwhile: try another
        try:
            assert [sim.urls[n] for n in PORT_NAMES] == [
                f"http://127.0.0.1:{base + i}" for i in range(len(PORT_NAMES))]
            assert requests.get(sim.urls["control"] + "/_sim/truth").status_code == 200
        finally:
            sim.stop()
        return
    pytest.skip("no free block of 11 ports found")
