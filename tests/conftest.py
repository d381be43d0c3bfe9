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
