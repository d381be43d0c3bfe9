"""One Chromium per process (through nodriver), started lazily, reused, and never leaked.

Why so careful: the earlier system started a browser per property and source, and a crashed
or cancelled run left Chromium processes and profile folders behind on a 2-core machine shared
by others. Here:

* one browser per process, started on first use, reused across properties (``max_tabs`` tabs
  at once), with a temp profile dir we create ourselves;
* a normal Chrome user agent (nodriver's default says "HeadlessChrome", which sites block);
* every tab is closed on success, failure and cancellation;
* :meth:`BrowserManager.close` stops Chromium, kills whatever is left of its process tree
  (and anything still running with our profile dir on its command line), then removes the
  profile dir; the same cleanup runs from ``atexit`` and from a chained SIGTERM handler, so
  a process that is cancelled by the orchestration does not orphan Chromium.

Adapter helpers: :func:`get_html`, :func:`wait_for`, :func:`press_and_hold` (CDP
``Input.dispatchMouseEvent``: trusted events, which the press-and-hold gate requires).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from phx_images.net.redact import get_logger, redact_text
from phx_images.settings import BrowserSettings

log = get_logger(__name__)

CHROMIUM_ARGS: tuple[str, ...] = (
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--disable-dev-shm-usage",
)
PROFILE_PREFIX = "phx-chromium-"
START_ATTEMPTS = 3  # Chromium starts per browser (a slow start is retried, see start())
_FALLBACK_MAJOR = "124"


def chrome_user_agent(major: str) -> str:
    """A normal desktop Chrome UA (no "Headless") for Chromium major version ``major``."""
    return (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/{major}.0.0.0 Safari/537.36"
    )


async def _chromium_major(executable: str) -> str:
    """Major version of the installed Chromium, so the UA matches the real engine."""
    try:
        proc = await asyncio.create_subprocess_exec(
            executable, "--version",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=10)
    except (OSError, TimeoutError):
        return _FALLBACK_MAJOR
    match = re.search(rb"(\d+)\.\d+\.\d+", out)
    return match.group(1).decode() if match else _FALLBACK_MAJOR


# ----------------------------------------------------------------------------------------------
# Process-tree cleanup (synchronous: usable from atexit and signal handlers)


def _proc_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (ppid, state, cmdline) for every visible process, read from /proc."""
    table: dict[int, tuple[int, str, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        rest = stat.rsplit(")", 1)[-1].split()
        if len(rest) < 2:
            continue
        table[int(entry)] = (int(rest[1]), rest[0], cmdline)
    return table


def browser_pids(root_pid: int | None, profile_dir: str | None) -> set[int]:
    """Live (non-zombie) pids of the browser: ``root_pid``, its descendants, and any process
    whose command line names ``profile_dir`` (Chromium helpers that were re-parented)."""
    table = _proc_table()
    found: set[int] = set()
    if root_pid is not None and root_pid in table:
        found.add(root_pid)
        changed = True
        while changed:
            changed = False
            for pid, (ppid, _state, _cmd) in table.items():
                if ppid in found and pid not in found:
                    found.add(pid)
                    changed = True
    if profile_dir:
        found |= {pid for pid, (_p, _s, cmd) in table.items() if profile_dir in cmd}
    found.discard(os.getpid())
    return {pid for pid in found if table.get(pid, (0, "Z", ""))[1] != "Z"}


def kill_tree(root_pid: int | None, profile_dir: str | None, grace_s: float = 3.0) -> None:
    """SIGTERM the browser's processes, wait up to ``grace_s``, SIGKILL what is left, reap."""
    pids = browser_pids(root_pid, profile_dir)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline:
        _reap(root_pid)
        pids = browser_pids(root_pid, profile_dir) & pids
        if pids:
            time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    end = time.monotonic() + 2.0
    while browser_pids(root_pid, profile_dir) and time.monotonic() < end:
        _reap(root_pid)
        time.sleep(0.05)
    _reap(root_pid)


def _reap(pid: int | None) -> None:
    if pid is None:
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def remove_profile(profile_dir: str | None) -> None:
    """Remove the profile dir; retried because a dying helper may still write into it."""
    if not profile_dir:
        return
    for _ in range(10):
        shutil.rmtree(profile_dir, ignore_errors=True)
        if not os.path.exists(profile_dir):
            return
        time.sleep(0.1)


_live: set[BrowserManager] = set()
_live_lock = threading.Lock()
_hooks_installed = False
_previous_sigterm: Any = None


OWNER_FILE = "phx-owner.pid"


def sweep_orphan_profiles(tmp: str | None = None) -> list[str]:
    """Remove profile folders whose owning process is gone (killed with SIGKILL, where no
    cleanup can run); returns what was removed. Folders of live owners are left alone."""
    removed = []
    for folder in Path(tmp or tempfile.gettempdir()).glob(f"{PROFILE_PREFIX}*"):
        try:
            owner = int((folder / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            # no owner recorded (older version, or killed before writing it): by age
            try:
                if time.time() - folder.stat().st_mtime < 3600:
                    continue
            except OSError:
                continue
        else:
            try:
                os.kill(owner, 0)
                continue  # the owner lives
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(str(folder))
    return removed


def _cleanup_all() -> None:
    """Kill every live browser of this process and remove its profile (sync; atexit/signal)."""
    with _live_lock:
        managers = list(_live)
    for manager in managers:
        manager._close_sync()


def _on_sigterm(signum: int, frame: Any) -> None:
    _cleanup_all()
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
    elif previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
    # SIG_IGN: the process chose to ignore SIGTERM; the browser is gone, carry on.


def _install_hooks() -> None:
    """atexit always; SIGTERM only from the main thread, chained to any previous handler."""
    global _hooks_installed, _previous_sigterm
    if _hooks_installed:
        return
    atexit.register(_cleanup_all)
    if threading.current_thread() is threading.main_thread():
        _previous_sigterm = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_sigterm)
    _hooks_installed = True


# ----------------------------------------------------------------------------------------------


class BrowserManager:
    """The process's Chromium: lazy start, bounded tabs, leak-proof close."""

    def __init__(self, settings: BrowserSettings | None = None) -> None:
        self.settings = settings or BrowserSettings()
        self._browser: Any = None
        self._pid: int | None = None
        self._profile: str | None = None
        self._start_lock: asyncio.Lock | None = None
        self._tabs: asyncio.Semaphore | None = None
        self.user_agent: str | None = None
        self.tabs_opened = 0
        self.tabs_closed = 0

    @property
    def pid(self) -> int | None:
        """Pid of the Chromium main process (None when not running)."""
        return self._pid

    @property
    def profile_dir(self) -> str | None:
        """The temp profile dir of the running browser (None when not running)."""
        return self._profile

    @property
    def running(self) -> bool:
        return self._browser is not None

    async def start(self) -> Any:
        """The nodriver Browser, started on first call (concurrent callers share one start)."""
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
            self._tabs = asyncio.Semaphore(self.settings.max_tabs)
        async with self._start_lock:
            if self._browser is not None:
                return self._browser
            import nodriver  # heavy import: only when a browser is actually needed

            _install_hooks()
            major = await _chromium_major(self.settings.executable)
            self.user_agent = chrome_user_agent(major)
            sweep_orphan_profiles()
            for attempt in range(1, START_ATTEMPTS + 1):
                self._profile = tempfile.mkdtemp(prefix=PROFILE_PREFIX)
                Path(self._profile, OWNER_FILE).write_text(str(os.getpid()))
                with _live_lock:
                    _live.add(self)
                try:
                    browser = await nodriver.start(
                        browser_executable_path=self.settings.executable,
                        headless=self.settings.headless,
                        sandbox=False,
                        user_data_dir=self._profile,
                        browser_args=[*CHROMIUM_ARGS, f"--user-agent={self.user_agent}"],
                    )
                    break
                except Exception as exc:
                    # nodriver gives Chromium about 3 s to open its DevTools port; on a
                    # loaded 2-core worker that is sometimes not enough: start afresh
                    self._close_sync()
                    if attempt == START_ATTEMPTS:
                        raise
                    log.warning("Chromium did not come up (attempt %d of %d): %s",
                                attempt, START_ATTEMPTS, redact_text(exc).strip()[:200])
                    await asyncio.sleep(attempt)
                except BaseException:
                    self._close_sync()
                    raise
            self._browser = browser
            self._pid = getattr(browser, "_process_pid", None)
            log.info("started Chromium pid %s, profile %s", self._pid, self._profile)
            return browser

    @contextlib.asynccontextmanager
    async def tab(self, url: str | None = None) -> AsyncIterator[Any]:
        """A fresh tab (navigated to ``url`` if given), closed on every way out."""
        browser = await self.start()
        assert self._tabs is not None
        async with self._tabs:
            tab = await browser.get("about:blank", new_tab=True)
            self.tabs_opened += 1
            try:
                if url is not None:
                    await navigate(tab, url, timeout=self.settings.page_timeout_s)
                yield tab
            finally:
                await self._close_tab(tab)

    async def _close_tab(self, tab: Any) -> None:
        """Close ``tab`` even while the caller is being cancelled."""
        task = asyncio.ensure_future(_close_tab_quietly(tab))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, timeout=5)
            raise
        finally:
            self.tabs_closed += 1

    async def open_tab_count(self) -> int:
        """Number of page targets open in the browser (0 if not running). For tests/operators."""
        if self._browser is None:
            return 0
        import nodriver.cdp as cdp

        infos = await self._browser.send(cdp.target.get_targets())
        return sum(1 for info in infos if info.type_ == "page")

    async def close(self) -> None:
        """Stop Chromium, kill leftovers of its process tree, remove the profile dir."""
        browser, self._browser = self._browser, None
        if browser is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(browser.aclose(), timeout=3)
            with contextlib.suppress(Exception):
                browser.stop()
            process = getattr(browser, "_process", None)
            if process is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(process.wait(), timeout=5)
            await asyncio.sleep(0)  # let nodriver's scheduled aclose run
            with contextlib.suppress(Exception):
                import nodriver.core.util as nd_util

                nd_util.get_registered_instances().discard(browser)
        await asyncio.get_running_loop().run_in_executor(None, self._close_sync)

    def _close_sync(self) -> None:
        """The synchronous part of close: kill the tree, remove the profile, forget it."""
        pid, profile = self._pid, self._profile
        if pid is not None or profile is not None:
            kill_tree(pid, profile)
            remove_profile(profile)
            log.info("Chromium pid %s stopped, profile %s removed", pid, profile)
        self._pid = None
        self._profile = None
        with _live_lock:
            _live.discard(self)


async def _close_tab_quietly(tab: Any) -> None:
    """Close ``tab`` and wait until Chromium has really dropped the target.

    ``Target.closeTarget`` answers before the target is gone; waiting makes "closed" mean
    closed (tab counts, the ``max_tabs`` semaphore) instead of "closing".
    """
    import nodriver.cdp as cdp

    try:
        target_id = tab.target.target_id
        await asyncio.wait_for(tab.close(), timeout=5)
        browser = tab.browser
        deadline = time.monotonic() + 3.0
        while browser is not None and time.monotonic() < deadline:
            infos = await asyncio.wait_for(browser.send(cdp.target.get_targets()), timeout=2)
            if all(info.target_id != target_id for info in infos):
                return
            await asyncio.sleep(0.05)
    except Exception as exc:  # a dead tab or browser: nothing left to close
        log.debug("closing tab failed: %s", redact_text(exc))


# ----------------------------------------------------------------------------------------------
# Helpers for adapters: take the page yielded by ``PolicyClient.page`` or a raw nodriver Tab


def _tab_of(page: Any) -> Any:
    """The nodriver Tab behind ``page`` (a BrowserPage, or already a Tab)."""
    # Checked on the class: nodriver's Tab.__getattr__ would answer for any attribute name.
    return page.tab if getattr(type(page), "is_browser_page", False) else page


class NavigationError(Exception):
    """Chromium could not load the page (connection refused, DNS, blocked by client...)."""


async def navigate(tab: Any, url: str, timeout: float = 30.0) -> None:
    """Navigate ``tab`` to ``url`` and wait until the document is at least interactive.

    nodriver's ``Tab.get`` returns as soon as navigation commits and ignores errors; this
    raises :class:`NavigationError` on a failed load and TimeoutError when it takes too long.
    """
    import nodriver.cdp as cdp

    tab = _tab_of(tab)

    async def _go() -> None:
        result = await tab.send(cdp.page.navigate(url))
        error = result[2] if len(result) > 2 else None
        if error:
            raise NavigationError(f"{error} loading {redact_text(url)}")
        while True:
            with contextlib.suppress(Exception):
                if await tab.evaluate("document.readyState") in ("interactive", "complete"):
                    return
            await asyncio.sleep(0.05)

    await asyncio.wait_for(_go(), timeout=timeout)


async def get_html(tab: Any) -> str:
    """The current DOM of ``tab`` serialised as HTML (after scripts ran)."""
    return await _tab_of(tab).get_content()


async def wait_for(tab: Any, selector: str, timeout: float = 10.0) -> Any:
    """Wait until ``selector`` matches in ``tab``; return the element. Raises TimeoutError.

    Polls ``document.querySelector`` from JS (cheap, 0.1 s) instead of nodriver's 0.5 s DOM
    round-trips, then hands back nodriver's element for interaction.
    """
    import json

    tab = _tab_of(tab)
    probe = f"document.querySelector({json.dumps(selector)}) !== null"
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if await tab.evaluate(probe) is True:
                element = await tab.query_selector(selector)
                if element is not None:
                    return element
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{selector!r} did not appear within {timeout:.1f}s")
        await asyncio.sleep(0.1)


async def element_centre(tab: Any, selector: str) -> tuple[float, float]:
    """Viewport coordinates of the centre of the first element matching ``selector``."""
    import json

    tab = _tab_of(tab)
    js = (
        f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
        " if (!e) return null; e.scrollIntoView({block: 'center', inline: 'center'});"
        " const r = e.getBoundingClientRect();"
        " return JSON.stringify([r.left + r.width / 2, r.top + r.height / 2]); })()"
    )
    raw = await tab.evaluate(js)
    if not isinstance(raw, str):
        raise LookupError(f"no element matches {selector!r}")
    x, y = json.loads(raw)
    return float(x), float(y)


async def press_and_hold(tab: Any, selector: str, seconds: float) -> None:
    """Press the primary mouse button at the centre of ``selector``, hold, release.

    Uses CDP ``Input.dispatchMouseEvent`` (mouseMoved, mousePressed, wait, mouseReleased):
    these are trusted input events (``event.isTrusted``), unlike synthetic JS events. The
    release is sent even if the wait is cancelled, so the page is never left with the button
    down.
    """
    import nodriver.cdp as cdp

    tab = _tab_of(tab)
    x, y = await element_centre(tab, selector)
    left = cdp.input_.MouseButton("left")
    await tab.send(cdp.input_.dispatch_mouse_event("mouseMoved", x=x, y=y))
    await tab.send(
        cdp.input_.dispatch_mouse_event(
            "mousePressed", x=x, y=y, button=left, buttons=1, click_count=1
        )
    )
    try:
        await asyncio.sleep(seconds)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(
                tab.send(
                    cdp.input_.dispatch_mouse_event(
                        "mouseReleased", x=x, y=y, button=left, buttons=0, click_count=1
                    )
                )
            )


def profile_dirs_left(root: str | Path | None = None) -> list[str]:
    """Profile dirs of this layer still on disk (for tests and operators)."""
    base = Path(root or tempfile.gettempdir())
    return sorted(str(p) for p in base.glob(f"{PROFILE_PREFIX}*"))
