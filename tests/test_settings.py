"""Settings: a nested environment value overrides one field and keeps the others."""

from __future__ import annotations

import pytest

from phx_images.settings import SOURCE_DEFAULTS, Settings, SourceSettings


@pytest.mark.parametrize("env,check", [
    ({"PHX_ZILLOW__MAX_RPS": "0.3"},
     lambda s: s.zillow.max_rps == 0.3 and s.zillow.base_url == "https://www.zillow.com"),
    ({"PHX_ASSESSOR__TOKEN": "t0ken"},
     lambda s: s.assessor.token.get_secret_value() == "t0ken" and s.assessor.max_rps == 1.5),
    ({"PHX_REDFIN__BASE_URL": "http://127.0.0.1:9"},
     lambda s: s.redfin.base_url == "http://127.0.0.1:9" and s.redfin.max_rps == 1.0
     and s.redfin.asset_urls == ["https://ssl.cdn-redfin.com"]),
    ({"PHX_IMAGES__MAX_LONG_SIDE": "512"}, lambda s: s.images.max_long_side == 512),
    ({"PHX_STORE_URL": "s3://bucket/prefix"}, lambda s: s.store_url == "s3://bucket/prefix"),
    ({"PHX_PROXIES": '["http://u:p@127.0.0.1:3128"]'}, lambda s: len(s.proxies) == 1),
    ({"PHX_STORE_OPTIONS": '{"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}'},
     lambda s: s.store_options["client_kwargs"]["endpoint_url"] == "http://127.0.0.1:9000"),
    ({"PHX_DATABASE_URL": "postgresql://user:pass@host/phx"},
     lambda s: s.database() == "postgresql://user:pass@host/phx"
     and "pass" not in repr(s.database_url)),
])
def test_each_readme_setting_works_alone(monkeypatch: pytest.MonkeyPatch, env: dict,
                                         check: object) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert check(settings)  # type: ignore[operator]


def test_the_defaults_in_settings_are_the_ones_in_force(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator's environment names only each source's URLs: the ceilings stay the
    defaults (Zillow 0.5/s, the assessor 1.5/s), not the model's generic 1.0."""
    monkeypatch.setenv("PHX_ZILLOW__BASE_URL", "http://127.0.0.1:8701")
    monkeypatch.setenv("PHX_ASSESSOR__BASE_URL", "http://127.0.0.1:8707")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    for name, defaults in SOURCE_DEFAULTS.items():
        assert settings.source(name).max_rps == defaults["max_rps"]


def test_a_whole_source_object_still_replaces_the_defaults() -> None:
    settings = Settings(redfin=SourceSettings(base_url="http://x"), _env_file=None)  # type: ignore[call-arg]
    assert settings.redfin.base_url == "http://x" and settings.redfin.max_rps == 1.0


def test_database_defaults_to_a_file_in_the_data_dir(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    assert settings.database() == f"sqlite:///{tmp_path.resolve() / 'phx.db'}"
