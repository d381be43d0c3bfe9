"""download(): through the policy client's contract, then inspected; errors name the URL."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any

import pytest

from phx_images.images import BadImage, download
from tests.image_helpers import bomb_png, jpeg


@dataclass
class _Response:
    url: str
    content: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "image/jpeg"})


class _FakeClient:
    """Stands in for phx_images.net.PolicyClient (contract in docs/architecture.md)."""

    def __init__(self, bodies: dict[str, bytes | Exception]) -> None:
        self.bodies = bodies
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    async def fetch(self, source: str, url: str, **kwargs: Any) -> _Response:
        self.calls.append((source, url, kwargs))
        body = self.bodies[url]
        if isinstance(body, Exception):
            raise body
        return _Response(url + "?final", body)


def test_download_ok_goes_through_policy_layer() -> None:
    data = jpeg(1, (640, 427))
    client = _FakeClient({"http://x/a.jpg": data})
    result = asyncio.run(download(client, "zillow", "http://x/a.jpg", max_bytes=1234))
    assert result.data == data and result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.final_url == "http://x/a.jpg?final"
    assert (result.info.width, result.info.height) == (640, 427)
    assert client.calls == [("zillow", "http://x/a.jpg", {"kind": "image", "max_bytes": 1234})]


@pytest.mark.parametrize("body,reason", [
    (b"<html>blocked</html>", "HTML"), (b"", "empty"), (bomb_png(), "bomb"),
])
def test_bad_body_raises_bad_image_with_url(body: bytes, reason: str) -> None:
    client = _FakeClient({"http://x/b.jpg": body})
    with pytest.raises(BadImage) as info:
        asyncio.run(download(client, "redfin", "http://x/b.jpg", max_bytes=10**6))
    assert reason.lower() in info.value.reason.lower()
    assert info.value.url == "http://x/b.jpg" and "http://x/b.jpg" in str(info.value)


def test_policy_errors_propagate() -> None:
    class TooLarge(Exception):
        pass

    client = _FakeClient({"http://x/c.jpg": TooLarge("over cap")})
    with pytest.raises(TooLarge):
        asyncio.run(download(client, "redfin", "http://x/c.jpg", max_bytes=10))
