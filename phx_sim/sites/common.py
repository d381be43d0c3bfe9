"""Helpers shared by the site imitations: safe HTML, embedded JSON, address matching."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from phx_sim.catalog import norm_words
from phx_sim.http import Response, html_response

T = TypeVar("T")


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


class WordIndex(Generic[T]):
    """Items searched with :func:`matches`, behind an inverted index of their words.

    Why: with thousands of generated properties a linear :func:`matches` scan costs tens of
    milliseconds per search, and the PhoenixMLS box searches on every keystroke. A match needs
    every complete word of the query in the item's texts, so only items holding all of them
    are checked; the answer (items and their order) is exactly that of the linear scan.
    """

    def __init__(self, items: Iterable[tuple[T, tuple[str, ...]]]) -> None:
        self.items = list(items)
        postings: dict[str, list[int]] = {}
        for i, (_item, texts) in enumerate(self.items):
            for word in {w for text in texts for w in norm_words(text)}:
                postings.setdefault(word, []).append(i)
        self._lists = postings
        self._sets = {w: frozenset(v) for w, v in postings.items()}

    def find(self, query: str, partial_last: bool = False) -> list[T]:
        words = norm_words(query)
        if not words:
            return []
        complete = set(words[:-1] if partial_last else words)
        if complete:
            if any(w not in self._lists for w in complete):
                return []
            rarest = min(complete, key=lambda w: len(self._lists[w]))
            others = [self._sets[w] for w in complete if w != rarest]
            candidates: Iterable[int] = (i for i in self._lists[rarest]
                                         if all(i in s for s in others))
        else:
            candidates = range(len(self.items))
        return [self.items[i][0] for i in candidates
                if matches(query, *self.items[i][1], partial_last=partial_last)]


def money(value: int) -> str:
    return f"${value:,}"
