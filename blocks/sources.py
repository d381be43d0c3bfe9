"""One block per listing source (``listing-source/zillow`` ...): where it is, how fast to go."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from phx_images.settings import SourceSettings


class ListingSource(Block):
    """A listing site's location and politeness limits, editable per deployment in the UI.

    Saved under the source's name (``zillow``, ``redfin``, ``phoenixmls``, ``assessor``); the
    flows overlay it on the ``PHX_`` settings. The assessor's API token is a secret field: the UI
    obfuscates it and it never reaches logs or artifacts.
    """

    _block_type_name = "Listing Source"
    _block_type_slug = "listing-source"
    _description = "A listing site: base URL, photo CDN origins, request ceiling, retries."

    enabled: bool = True
    base_url: str = Field(description="The site's origin, e.g. https://www.zillow.com")
    asset_urls: list[str] = Field(default_factory=list, description="Photo CDN origins")
    max_rps: float = Field(1.0, gt=0, description="Requests/second ceiling, across all workers")
    max_concurrency: int = Field(2, ge=1, description="Concurrent tasks against this source")
    max_retries: int = Field(3, ge=0)
    timeout_s: float = Field(20.0, gt=0)
    token: SecretStr | None = Field(None, description="API token (the assessor's)")

    def apply(self, base: SourceSettings) -> SourceSettings:
        """The engine settings for this source: the block's values over ``base``."""
        return base.model_copy(
            update={
                "enabled": self.enabled,
                "base_url": self.base_url,
                "asset_urls": list(self.asset_urls),
                "max_rps": self.max_rps,
                "max_retries": self.max_retries,
                "max_concurrency": self.max_concurrency,
                "timeout_s": self.timeout_s,
                "token": self.token or base.token,
            }
        )
