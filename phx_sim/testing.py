"""Helpers for tests that talk to the simulator with a plain HTTP client.

Why this exists: Zillow's pages sit behind a JavaScript challenge that only a browser passes.
Tests of the *pages* (parsers, truth) should not each start Chromium, so this module computes
the challenge's token in Python, exactly as the page's script does. The browser path itself is
tested separately (tests/test_sim_browser.py).
"""

from __future__ import annotations

import re

from phx_sim.sites.zillow import JS_COOKIE, js_token

_NONCE = re.compile(r'var n = "([0-9a-f-]{1,80})"')


def solve_zillow_challenge(challenge_html: str) -> tuple[str, str]:
    """(cookie name, cookie value) that passes the challenge page ``challenge_html``."""
    m = _NONCE.search(challenge_html)
    if not m:
        raise ValueError("not a Zillow challenge page (no nonce found)")
    nonce = m.group(1)
    return JS_COOKIE, f"{nonce}.{js_token(nonce)}"
