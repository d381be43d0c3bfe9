"""``phx-images discover`` end to end: a real subprocess against the simulator.

The subprocess gets its own TMPDIR, so the Chromium profile it creates lives there; after the
run no process may still name that directory and no profile may be left in it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
EXE = ROOT / ".venv" / "bin" / "phx-images"
ADDRESS = "4732 W Davis Rd, Glendale, AZ 85306"


def run_cli(sim: Any, tmp_path: Path, *args: str, timeout: float = 180
            ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHX_")}
    env.update(sim.env())
    env["TMPDIR"] = str(tmp_path)
    exe = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "phx_images.cli"]
    return subprocess.run([*exe, "discover", *args], env=env, cwd=tmp_path, text=True,
                          capture_output=True, timeout=timeout, check=False)


def processes_naming(text: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if text in cmd and state != "Z":
            found.append(f"{entry}: {cmd[:120]}")
    return found


def test_discover_json_all_sources(sim: Any, tmp_path: Path) -> None:
    truth = sim.truth()
    prop = next(p for p in truth["properties"] if p["full_address"] == ADDRESS)
    done = run_cli(sim, tmp_path, "--address", ADDRESS, "--sources", "all", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["address"] == ADDRESS
    assert set(out["sources"]) == {"zillow", "redfin", "phoenixmls", "assessor"}
    ids = set(prop["photo_ids"])
    for site, listing in out["sources"].items():
        assert listing["status"] == ("found" if site in prop["on_sites"] else "not_found"), (
            site, listing["reason"])
        if site == "assessor":
            assert listing["photos"] == [] and listing["facts"]["apn"] == prop["ids"]["apn"]
            continue
        want = {ph["best_per_site"][site] for ph in truth["photos"]
                if ph["id"] in ids and site in ph["best_per_site"]}
        assert {p["best_url"] for p in listing["photos"]} == want
        first = listing["photos"][0]
        assert set(first) >= {"source_photo_id", "best_url", "variants", "caption"}
        assert first["best_url"] in {v["url"] for v in first["variants"]}
    assert "phx-sim-assessor-token" not in done.stdout + done.stderr
    # Nothing of the browser is left: no process naming our TMPDIR, no profile dir in it.
    assert not processes_naming(str(tmp_path))
    assert not list(tmp_path.glob("phx-chromium-*"))


def test_discover_summary_unknown_address(sim: Any, tmp_path: Path) -> None:
    unknown = sim.truth()["unknown_addresses"][0]
    done = run_cli(sim, tmp_path, "--address", unknown, "--sources", "redfin,assessor")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "redfin" in done.stdout and "not_found" in done.stdout
    assert done.stdout.count("not_found") == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--address", "not an address"], "bad --address"),
        (["--address", "1 Main St, Phoenix, AZ 8500"], "bad --address"),
        (["--address", ADDRESS, "--sources", "zillow,trulia"], "unknown source(s): trulia"),
        (["--address", ADDRESS, "--sources", ","], "no source given"),
    ],
)
def test_discover_bad_input(sim: Any, tmp_path: Path, args: list[str], message: str) -> None:
    done = run_cli(sim, tmp_path, *args, timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert "Traceback" not in done.stderr
