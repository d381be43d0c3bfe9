"""Helpers shared by the site imitations: safe HTML, embedded JSON, address matching."""

from __future__ import annotations

import html
import json
from typing import Any

from phx_sim.catalog import norm_words
from phx_sim.http import Response, html_response


def esc(value: object) -> str:
    """HTML-escape anything a request could have put into a page."""
    return html.escape(str(value), quote=True)


def script_json(obj: Any) -> str:
    """JSON safe to embed in a ``<script>`` element (no ``</script>`` break-out)."""
    return json.dumps(obj).replace("<", "\\u003c").replace(">", "\\u003e").replace(
        "&", "\\u0026")


def page(title: str, body: str, status: int = 200, head: str = "",
         headers: list[tuple[str, str]] | None = None) -> Response:
    return html_response(
        f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)}</title>{head}</head>\n<body>\n{body}\n</body></html>\n",
        status, headers)


def not_found(site: str) -> Response:
    return page(f"Page not found | {site}", "<h1>404</h1><p>We could not find that page.</p>",
                404)


def matches(query: str, *texts: str, partial_last: bool = False) -> bool:
    """Whether the words of ``query`` appear, in order and contiguously, in one of ``texts``
    (word-bounded: "4732 w davis" matches "4732 W Davis Rd", "732 w davis" does not).
    ``partial_last`` lets the last word be a prefix, as while someone is still typing."""
    q = norm_words(query)
    if not q:
        return False
    for text in texts:
        words = norm_words(text)
        for i in range(len(words) - len(q) + 1):
            window = words[i:i + len(q)]
            if window[:-1] != q[:-1]:
                continue
            last_ok = (window[-1].startswith(q[-1]) if partial_last else window[-1] == q[-1])
            if last_ok:
                return True
    return False


def money(value: int) -> str:
    return f"${value:,}"
