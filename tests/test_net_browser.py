"""The shared browser: tabs always closed, trusted press-and-hold, nothing left behind.

Real Chromium through nodriver (marked ``browser``). Process checks read /proc: a leftover is
any live process whose command line names the profile dir, or a descendant of the browser pid.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from phx_images.net import browser as net_browser
from phx_images.net.browser import browser_pids
from phx_images.net.client import PolicyClient
from phx_images.net.errors import CircuitOpen, NotAllowed
from tests.test_net_support import make_settings, ok, origin_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Chromium"),
]

HOLD_PAGE = b"""<!doctype html><html><head><title>hold</title></head><body>
<div id="px-captcha" style="width:240px;height:80px;margin:60px;background:#ddd">hold</div>
<script>
let down = null; window.result = null;
const el = document.getElementById('px-captcha');
el.addEventListener('mousedown', e => { down = {t: performance.now(), trusted: e.isTrusted}; });
el.addEventListener('mouseup', e => {
  window.result = {held: performance.now() - down.t, trusted: down.trusted && e.isTrusted};
});
</script></body></html>"""


def _alive(pid: int | None, profile: str | None) -> set[int]:
    return browser_pids(pid, profile)


def test_pages_tabs_and_cleanup(tmp_path: Path) -> None:
    routes = {"/hold": ok(HOLD_PAGE, **{"Content-Type": "text/html"}),
              "/plain": ok(b"<html><body><p id='p'>hi</p></body></html>",
                           **{"Content-Type": "text/html"})}  # fmt: skip
    with origin_server(routes) as origin:
        settings = make_settings(tmp_path, origin.url, breaker_failures=1)

        async def go() -> tuple[int | None, str | None]:
            client = PolicyClient(settings)
            try:
                return await checks(client)
            finally:
                await client.aclose()

        async def checks(client: PolicyClient) -> tuple[int | None, str | None]:
            manager = client.browser()
            # trusted press-and-hold at the element's centre, held for the asked time
            async with client.page("redfin", origin.url + "/hold") as page:
                assert "px-captcha" in await net_browser.get_html(page)
                await net_browser.wait_for(page, "#px-captcha", timeout=5)
                await net_browser.press_and_hold(page, "#px-captcha", 0.6)
                raw = await page.evaluate("JSON.stringify(window.result)")
            held = json.loads(raw) if isinstance(raw, str) else None
            assert held is not None, "mouse events did not reach the element"
            assert held["trusted"] is True
            assert 550 <= held["held"] < 3000
            pid, profile = manager.pid, manager.profile_dir
            assert pid is not None and profile is not None and os.path.isdir(profile)
            baseline = await manager.open_tab_count()

            # tab closed when the adapter's block raises
            with pytest.raises(RuntimeError):
                async with client.page("redfin", origin.url + "/plain") as page:
                    assert await manager.open_tab_count() == baseline + 1
                    raise RuntimeError("adapter failed")
            assert await manager.open_tab_count() == baseline

            # ... and when the task using it is cancelled
            entered = asyncio.Event()

            async def user() -> None:
                async with client.page("redfin", origin.url + "/plain") as page:
                    await net_browser.wait_for(page, "#p", timeout=5)
                    entered.set()
                    await asyncio.sleep(60)

            task = asyncio.create_task(user())
            await asyncio.wait_for(entered.wait(), 20)
            assert await manager.open_tab_count() == baseline + 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await manager.open_tab_count() == baseline

            # a page off the allowlist opens no tab at all
            with pytest.raises(NotAllowed):
                async with client.page("redfin", "http://elsewhere.invalid/x"):
                    pass
            assert await manager.open_tab_count() == baseline
            pages = [h.path for h in origin.hits if h.path != "/favicon.ico"]
            assert pages == ["/hold", "/plain", "/plain"]  # the refused one never loaded

            await client.aclose()
            assert not manager.running
            return pid, profile

        pid, profile = asyncio.run(go())
    assert _alive(pid, profile) == set()
    assert not os.path.exists(profile)


def test_failed_navigation_counts_for_the_breaker(tmp_path: Path) -> None:
    with origin_server() as origin:
        url = origin.url  # server stopped: connection refused
    settings = make_settings(tmp_path, url, breaker_failures=1, breaker_reset_s=60)

    async def go() -> None:
        async with PolicyClient(settings) as client:
            with pytest.raises(Exception, match="navigation failed"):
                async with client.page("redfin", url + "/x"):
                    pass
            with pytest.raises(CircuitOpen):
                async with client.page("redfin", url + "/x"):
                    pass
            assert await client.browser().open_tab_count() == 1  # only the initial blank tab

    asyncio.run(go())


SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from phx_images.net.browser import BrowserManager

    async def main():
        manager = BrowserManager()
        async with manager.tab("about:blank"):
            print(manager.pid, manager.profile_dir, flush=True)
            if sys.argv[1] == "exception":
                raise SystemExit("boom: exiting without close()")
            await asyncio.sleep(120)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("how", ["sigterm", "exception"])
def test_no_chromium_survives_process_exit(tmp_path: Path, how: str) -> None:
    """SIGTERM (as a Prefect cancellation sends) or an unhandled exit without close()."""
    script = tmp_path / "run_browser.py"
    script.write_text(SCRIPT)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}  # the child runs the code under test
    proc = subprocess.Popen(
        [sys.executable, str(script), how],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=root,
        env=env,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line, proc.stderr.read() if proc.stderr else "no output"
        pid_s, profile = line.split()
        pid = int(pid_s)
        if how == "sigterm":
            assert _alive(pid, profile), "browser should be running before the signal"
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 5
    while _alive(pid, profile) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _alive(pid, profile) == set()
    assert not os.path.exists(profile)
    if how == "sigterm":
        assert proc.returncode == -signal.SIGTERM  # the default action still ran afterwards


def test_sweep_removes_only_profiles_of_dead_owners(tmp_path: Path) -> None:
    """A worker killed with SIGKILL cannot clean up; the next browser start sweeps after it."""
    from phx_images.net.browser import OWNER_FILE, PROFILE_PREFIX, sweep_orphan_profiles

    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = tmp_path / f"{PROFILE_PREFIX}orphan"
    alive = tmp_path / f"{PROFILE_PREFIX}alive"
    young = tmp_path / f"{PROFILE_PREFIX}young-no-owner"
    for folder, owner in ((orphan, dead.pid), (alive, os.getpid()), (young, None)):
        folder.mkdir()
        if owner is not None:
            (folder / OWNER_FILE).write_text(str(owner))
    removed = sweep_orphan_profiles(str(tmp_path))
    assert removed == [str(orphan)]
    assert alive.exists() and young.exists() and not orphan.exists()


def test_a_slow_chromium_start_is_retried_and_leaves_nothing(tmp_path: Path) -> None:
    """The first Chromium does not open its DevTools port in time (as on a loaded worker):
    it is killed with its profile, and a second start succeeds."""
    from phx_images.net.browser import PROFILE_PREFIX, BrowserManager
    from phx_images.settings import BrowserSettings

    mark = tmp_path / "slow-once"
    wrapper = tmp_path / "chromium"
    wrapper.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        case "$*" in *remote-debugging*)
          if [ ! -e {mark} ]; then touch {mark}; sleep 20; fi;;
        esac
        exec /usr/bin/chromium "$@"
        """))
    wrapper.chmod(0o755)
    before = {p.name for p in Path("/tmp").glob(PROFILE_PREFIX + "*")}

    async def go() -> tuple[int | None, str | None, str]:
        manager = BrowserManager(BrowserSettings(executable=str(wrapper)))
        try:
            browser = await manager.start()
            tab = await browser.get("about:blank")
            ready = await tab.evaluate("document.readyState")
            return manager.pid, manager.profile_dir, ready
        finally:
            await manager.close()

    pid, profile, ready = asyncio.run(go())
    assert mark.exists() and ready == "complete" and pid is not None
    assert not _alive(pid, profile)
    left = {p.name for p in Path("/tmp").glob(PROFILE_PREFIX + "*")} - before
    assert not left, f"profiles left behind: {left}"
    still = [entry.name for entry in Path("/proc").iterdir() if entry.name.isdigit()
             and str(wrapper).encode() in _cmdline(entry)]
    assert not still, f"the slow first Chromium is still running: {still}"


def _cmdline(proc_dir: Path) -> bytes:
    try:
        return (proc_dir / "cmdline").read_bytes()
    except OSError:
        return b""
