"""All runtime settings, in one place, read from the environment with the ``PHX_`` prefix.

Why one module: every knob an operator may turn (where the sites are, how fast we may hit them,
where photos are stored) must be discoverable in one file and validated once, at start-up, with
an error that names the bad setting. Defaults are safe for the local setup: the real sites'
public addresses, conservative request ceilings, and storage under ``./data``.

Nested settings use ``__`` as delimiter, e.g. ``PHX_ZILLOW__BASE_URL=http://127.0.0.1:8701``.
Prefect blocks (``blocks/``) carry the same fields per deployment and are turned into these
objects by the flows, so the engine never imports Prefect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SOURCE_NAMES: tuple[str, ...] = ("zillow", "redfin", "phoenixmls", "assessor")
PHOTO_SOURCES: tuple[str, ...] = ("zillow", "redfin", "phoenixmls")


class SourceSettings(BaseModel):
    """Where one source lives and how politely we must treat it.

    ``base_url`` is the site's own origin; ``asset_urls`` are the extra origins its photos are
    served from (CDNs). Together they form the source's host allowlist: nothing else is fetched.
    """

    enabled: bool = True
    base_url: str
    asset_urls: list[str] = Field(default_factory=list)
    max_rps: float = Field(1.0, gt=0, description="Hard ceiling, requests/second; never exceeded")
    asset_max_rps: float = Field(
        6.0, gt=0, description="Ceiling for its photo CDN, paced apart from the pages"
    )
    max_concurrency: int = Field(2, ge=1, description="Concurrent tasks against this source")
    asset_max_concurrency: int = Field(
        8, ge=1,
        description="Concurrent photo batch tasks (one per property) against its CDN across "
        "all workers (the tag limit); keep it at least the properties in flight, or tasks "
        "queue on Prefect's slot retries",
    )
    timeout_s: float = Field(20.0, gt=0)
    max_page_bytes: int = Field(8 * 1024 * 1024, gt=0)
    max_image_bytes: int = Field(50 * 1024 * 1024, gt=0)
    max_retries: int = Field(3, ge=0)
    breaker_failures: int = Field(3, ge=1, description="Consecutive failures that open it")
    breaker_reset_s: float = Field(300.0, gt=0, description="Open time before one probe")
    token: SecretStr | None = None
    impersonate: str = "chrome"

    @field_validator("base_url", "asset_urls")
    @classmethod
    def _http_urls(cls, value: str | list[str]) -> str | list[str]:
        for url in [value] if isinstance(value, str) else value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"not an http(s) URL: {url!r}")
        return value

    @property
    def origins(self) -> list[str]:
        """Every origin this source may be fetched from (its allowlist)."""
        return [self.base_url.rstrip("/"), *(u.rstrip("/") for u in self.asset_urls)]


#: Each source's defaults. A nested environment value (``PHX_ZILLOW__MAX_RPS=0.3``) or a partial
#: dict is merged over these field by field (``Settings._merge_source_defaults``): without the
#: merge, pydantic-settings replaces the whole source by the environment's fields, so one
#: variable dropped the source's other defaults (and failed on the missing ``base_url``).
SOURCE_DEFAULTS: dict[str, dict[str, object]] = {
    "zillow": {"base_url": "https://www.zillow.com",
               "asset_urls": ["https://photos.zillowstatic.com"], "max_rps": 0.5},
    "redfin": {"base_url": "https://www.redfin.com",
               "asset_urls": ["https://ssl.cdn-redfin.com"], "max_rps": 1.0},
    "phoenixmls": {"base_url": "https://phoenixmlssearch.com",
                   "asset_urls": ["https://cdn.photos.sparkplatform.com"], "max_rps": 1.0},
    "assessor": {"base_url": "https://mcassessor.maricopa.gov", "max_rps": 1.5},
}


def _default_source(name: str) -> SourceSettings:
    return SourceSettings.model_validate(SOURCE_DEFAULTS[name])


class BrowserSettings(BaseModel):
    """Chromium through nodriver: one browser per worker process, reused across properties."""

    executable: str = "/usr/bin/chromium"
    headless: bool = True
    max_tabs: int = Field(2, ge=1)
    page_timeout_s: float = Field(30.0, gt=0)
    max_hold_s: float = Field(15.0, gt=0, description="Longest press-and-hold we attempt")


class ImageSettings(BaseModel):
    """How photos are standardized and when two are the same photo."""

    max_long_side: int = Field(1024, ge=64)
    output_format: Literal["jpeg", "webp", "png"] = "jpeg"
    jpeg_quality: int = Field(88, ge=50, le=100)
    max_pixels: int = Field(60_000_000, gt=0, description="Decompression-bomb guard")
    phash_threshold: int = Field(8, ge=0, le=64)
    dhash_threshold: int = Field(10, ge=0, le=64)
    stale_after_days: int = Field(7, ge=1)


class OrchestrationSettings(BaseModel):
    """Knobs the Prefect flows read. Plain values (no Prefect types) so the engine stays free of
    Prefect; the flows turn them into deployments, limits and task options."""

    work_pool: str = "phx-process"
    child_deployment: str = "extract-property/worker"
    result_storage_block: str = Field(
        "local-file-system/phx-results",
        description="Prefect block slug for task results (the download cache); shared storage "
        "such as shared-result-storage/... when workers run on several machines",
    )
    result_storage_url: str | None = Field(
        None,
        description="Where the result-storage block points (s3://bucket/prefix for several "
        "machines); default: <data_dir>/prefect-results",
    )
    parallel_runs: int = Field(
        2, ge=1, description="Extraction runs (parents) in flight across the pool; the "
        "'runs' work queue's limit, so parents waiting on children never fill every worker "
        "slot (with workers at --limit 3, at least one slot stays for property runs)")
    download_concurrency: int = Field(
        4, ge=1, description="Downloads in flight per property and source")
    properties_per_child: int = Field(
        4, ge=1, le=50, description="Properties per child run: one process and one browser "
        "for all of them (a run costs a process start, Prefect's import and a Chromium)")
    property_concurrency: int = Field(
        2, ge=1, le=16, description="Properties a child run works on at once")
    poll_interval_s: float = Field(2.0, gt=0)
    refresh_max_age_hours: float = Field(24.0, gt=0)
    archive_after_days: float = Field(
        90, gt=0, description="The archive-photos flow moves a stored photo to cold storage "
        "(archive/) once every URL that showed it has been removed or stale, and last seen, "
        "for longer than this")
    stuck_after_s: float = Field(
        3600, ge=10, description="Alert when a property run stays Running longer than this")
    zombie_after_s: float = Field(
        90, ge=75, description="Mark a run Crashed when its process sent no heartbeat for this "
        "long (flow runs beat every 30 s, see prefect.yaml)")
    alert_webhook_url: SecretStr | None = Field(
        None, description="Where stuck-run alerts are POSTed (Slack-style JSON {text}); "
        "without it the alert shows only in the UI's event feed")


class Settings(BaseSettings):
    """The whole configuration. Instantiate once per process with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="PHX_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    data_dir: Path = Path("data")
    store_url: str = Field(
        "data/property_images",
        description="Image store root: a local path or an fsspec URL such as s3://bucket/prefix",
    )
    store_options: dict[str, object] = Field(default_factory=dict)
    properties_csv: Path = Path("data/phx_homes.csv")
    zillow: SourceSettings = Field(default_factory=lambda: _default_source('zillow'))
    redfin: SourceSettings = Field(default_factory=lambda: _default_source('redfin'))
    phoenixmls: SourceSettings = Field(default_factory=lambda: _default_source('phoenixmls'))
    assessor: SourceSettings = Field(default_factory=lambda: _default_source('assessor'))
    proxies: list[SecretStr] = Field(default_factory=list, description="Proxy URLs to rotate")
    allow_private_origins: list[str] = Field(
        default_factory=list,
        description="Loopback/private origins that are allowed anyway (the local simulator)",
    )
    browser: BrowserSettings = Field(default_factory=BrowserSettings)
    images: ImageSettings = Field(default_factory=ImageSettings)
    orchestration: OrchestrationSettings = Field(default_factory=lambda: OrchestrationSettings())
    database_url: SecretStr | None = Field(
        None, description="The project's own database, shared by every worker: the request "
        "ledger that keeps each site's ceiling across processes and machines. "
        "sqlite:///PATH (one machine) or postgresql://USER:PASSWORD@HOST/phx (several); "
        "default sqlite:///<data_dir>/phx.db")
    categorizer: Literal["captions", "vision"] = "captions"
    vision_url: str | None = None
    vision_api_key: SecretStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _merge_source_defaults(cls, data: object) -> object:
        """A source given as a (partial) dict keeps the defaults it does not name."""
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for name, defaults in SOURCE_DEFAULTS.items():
            value = merged.get(name)
            if isinstance(value, dict):
                merged[name] = {**defaults, **value}
        return merged

    def database(self) -> str:
        """The database URL in force (secret: never log it)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'phx.db').resolve()}"

    def source(self, name: str) -> SourceSettings:
        """The settings of source ``name``; a clear error for an unknown one."""
        if name not in SOURCE_NAMES:
            raise KeyError(f"unknown source {name!r}; known: {', '.join(SOURCE_NAMES)}")
        return getattr(self, name)


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment (and ``.env``), with explicit overrides on top."""
    return Settings(**overrides)
