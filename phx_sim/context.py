"""What every site needs from the running simulator, in one object.

Why: sites are plain classes with a ``handle(request)`` coroutine; giving them one context
(catalog, base URLs, faults, stats, renderer, signing secret) keeps them free of globals, so
several simulators can run in one process (the test suite does exactly that).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from phx_sim.catalog import Catalog
from phx_sim.faults import Faults
from phx_sim.render import Renderer
from phx_sim.stats import Stats

DEFAULT_ASSESSOR_TOKEN = "phx-sim-assessor-token"


@dataclass
class SimContext:
    seed: int
    catalog: Catalog
    urls: dict[str, str]
    faults: Faults
    stats: Stats
    renderer: Renderer
    secret: bytes
    assessor_token: str = DEFAULT_ASSESSOR_TOKEN
    _truth: bytes | None = field(default=None, repr=False)

    def sign(self, message: str, length: int = 16) -> str:
        """Short HMAC so cookies and nonces issued by this simulator can be recognised."""
        return hmac.new(self.secret, message.encode(), hashlib.sha256).hexdigest()[:length]

    def truth(self) -> dict[str, Any]:
        return json.loads(self.truth_bytes())

    def truth_bytes(self) -> bytes:
        if self._truth is None:
            self._truth = json.dumps(self.catalog.truth(self.urls)).encode()
        return self._truth

    def knob(self, port: str, name: str, default: Any = None) -> Any:
        """One fault knob as it applies to ``port`` right now."""
        knobs, _ = self.faults.effective(port)
        return knobs.get(name, default)
