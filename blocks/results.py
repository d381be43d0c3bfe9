"""Shared result storage for the download cache, with its credentials kept secret.

Prefect's ``RemoteFileSystem`` keeps its fsspec settings (S3 key and secret included) as a
plain dict, shown in the UI. This subclass stores them as a ``SecretDict``: obfuscated in the
UI and API, unwrapped only when the file system is built on a worker.
"""

from __future__ import annotations

import urllib.parse

import fsspec
from prefect.filesystems import RemoteFileSystem
from prefect.types import SecretDict
from pydantic import Field


class SharedResultStorage(RemoteFileSystem):
    """Task results (the URL-keyed download cache) on storage every worker reaches."""

    _block_type_name = "Shared Result Storage"
    _block_type_slug = "shared-result-storage"
    _description = "Remote file system (e.g. s3://bucket/prefix) with secret fsspec settings."

    settings: SecretDict = Field(  # type: ignore[assignment]
        default_factory=lambda: SecretDict({}),
        description="fsspec settings (key, secret, client_kwargs.endpoint_url), kept secret",
    )

    @property
    def filesystem(self) -> fsspec.AbstractFileSystem:
        if not self._filesystem:
            scheme = urllib.parse.urlsplit(self.basepath).scheme
            self._filesystem = fsspec.filesystem(scheme, **self.settings.get_secret_value())
        return self._filesystem
