"""Shared fixtures: one simulator per test session, settings that point the engine at it.

Every test talks to real parts (the simulator over real HTTP on loopback, real Chromium, a real
Prefect server where marked). Never use fixed ports: everything binds ephemeral ports, so
several test sessions can run on one machine at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from phx_images.settings import Settings
from phx_images.store import ImageStore


@pytest.fixture(scope="session")
def sim_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Rendered simulator photos are cached across sessions (they are deterministic)."""
    path = Path(os.environ.get("PHX_SIM_CACHE", "data/sim-cache")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def sim(sim_cache_dir: Path) -> Iterator[object]:
    """The simulator, faults off, shared by the session. Tests that set faults must use
    ``fresh_sim`` instead, or restore the faults they changed."""
    from phx_sim import Simulator

    with Simulator(seed=7, cache_dir=sim_cache_dir) as handle:
        yield handle


@pytest.fixture
def fresh_sim(sim_cache_dir: Path) -> Iterator[object]:
    """A simulator of the test's own, for tests that set faults or read exact stats."""
    from phx_sim import Simulator

    with Simulator(seed=7, cache_dir=sim_cache_dir) as handle:
        yield handle


def settings_for(sim_handle: object, tmp_path: Path, **overrides: object) -> Settings:
    """Settings pointing every source at ``sim_handle`` and the store at ``tmp_path``."""
    env = sim_handle.env()  # type: ignore[attr-defined]
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return Settings(
            data_dir=tmp_path, store_url=str(tmp_path / "property_images"), **overrides
        )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def sim_settings(sim: object, tmp_path: Path) -> Settings:
    return settings_for(sim, tmp_path)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One local S3-compatible server (moto) for the session's store tests."""
    from tests.image_helpers import moto_server

    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ImageStore:
    """An empty image store, once on local disk and once in a fresh bucket of ``moto``."""
    from tests.image_helpers import new_bucket, s3_options

    if request.param == "local":
        return ImageStore(str(tmp_path / "store"))
    endpoint = request.getfixturevalue("moto_endpoint")
    return ImageStore(new_bucket(endpoint), s3_options(endpoint))


LOG_TAIL_LINES = 60


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """A failed test that ran on a Prefect stack carries the tail of the stack's server and
    worker logs in its report, so a failure in CI, where only pytest's output survives,
    shows what the server and the flow runs were doing."""
    report = yield
    stack = getattr(item, "funcargs", {}).get("phx")
    if report.failed and call.when == "call" and stack is not None:
        for log in sorted(stack.stack.home.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            report.sections.append((f"{log.name} (last {len(lines)} lines)", "\n".join(lines)))
    return report
