"""The image store block: local folder or S3-compatible bucket where photos and metadata live."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class ImageStore(Block):
    """Where the photo set is kept. ``url`` is a local path or ``s3://bucket/prefix``; for an
    S3-compatible server give ``endpoint_url`` and the key pair (the secret stays a secret)."""

    _block_type_name = "Image Store"
    _block_type_slug = "image-store"
    _description = "Photo store location: a local folder or an S3-compatible bucket."

    url: str = Field("data/property_images", description="Local path or s3://bucket/prefix")
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None

    def storage_options(self) -> dict[str, object]:
        """fsspec options for this location (empty for a local folder)."""
        if not self.url.startswith("s3://"):
            return {}
        options: dict[str, object] = {}
        if self.endpoint_url:
            options["client_kwargs"] = {"endpoint_url": self.endpoint_url}
        if self.access_key_id:
            options["key"] = self.access_key_id
        if self.secret_access_key:
            options["secret"] = self.secret_access_key.get_secret_value()
        return options
