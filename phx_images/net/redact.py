"""Secret redaction for every log line, exception and artifact of the policy layer.

Why a module of its own: a token that leaks once (into a Prefect log, a flow-run artifact or an
exception stored as a task result) is leaked for good. So redaction is not left to each call
site: URLs, headers and free text all pass through these functions, and the values of known
secrets (source tokens, proxy passwords) are registered once and scrubbed wherever they appear,
even inside a third-party error message.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

MASK = "***"

#: Query parameter names whose values are credentials (compared lower-case, "-" -> "_").
SENSITIVE_PARAMS: frozenset[str] = frozenset(
    {
        "token", "access_token", "refresh_token", "id_token", "auth", "authorization",
        "key", "api_key", "apikey", "sig", "signature", "password", "passwd", "pwd",
        "secret", "client_secret", "session", "sessionid", "x_amz_signature",
        "x_amz_credential", "x_amz_security_token", "x_goog_signature",
    }
)  # fmt: skip

#: Header names whose values are credentials (compared lower-case).
SENSITIVE_HEADERS: frozenset[str] = frozenset(
    {"authorization", "proxy_authorization", "cookie", "set_cookie", "x_api_key", "api_key"}
)

_secrets: set[str] = set()
_lock = threading.Lock()
_URL_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>()\[\]]+")
_AUTH_RE = re.compile(
    r"(?i)\b(authorization|proxy-authorization)(['\"]?\s*[:=]\s*['\"]?)([^'\"\r\n,}]+)"
)


def register_secret(value: str | None) -> None:
    """Remember a secret value so :func:`redact_text` scrubs it wherever it appears.

    Values shorter than 4 characters are ignored: masking every "a" would ruin messages and
    such a value is no secret anyway.
    """
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def _norm(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def redact_url(url: str) -> str:
    """``url`` with the proxy/userinfo password and sensitive query values masked.

    ``http://user:pass@host/x?token=abc&q=1`` -> ``http://user:***@host/x?token=***&q=1``.
    Never raises: an unparsable URL is scrubbed as text instead.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return _scrub_secrets(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if sep else f"{MASK}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_norm(k) in SENSITIVE_PARAMS for k, _ in pairs):
            query = urlencode(
                [(k, MASK if _norm(k) in SENSITIVE_PARAMS else v) for k, v in pairs],
                safe="*",
                quote_via=quote,
            )
    out = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return _scrub_secrets(out)


def redact_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """A copy of ``headers`` with credential headers (Authorization, Cookie, ...) masked."""
    if not headers:
        return {}
    return {
        k: (MASK if _norm(k) in SENSITIVE_HEADERS else _scrub_secrets(str(v)))
        for k, v in headers.items()
    }


def _scrub_secrets(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
        encoded = quote(secret, safe="")
        if encoded != secret and encoded in text:
            text = text.replace(encoded, MASK)
    return text


def redact_text(text: object) -> str:
    """Free text with every URL redacted, Authorization values and known secrets masked."""
    out = _URL_RE.sub(lambda m: redact_url(m.group(0)), str(text))
    out = _AUTH_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", out)
    return _scrub_secrets(out)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the final message of every record passing through.

    Attached to the ``phx_images.net`` logger (and usable on any handler), it formats the
    record once, redacts it and freezes it, so neither ``%`` arguments nor exception text can
    carry a secret to a handler (Prefect's log shipping included).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the line
            message = str(record.msg)
        record.msg = redact_text(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact_text(
                logging.Formatter().formatException(record.exc_info)  # type: ignore[arg-type]
            )
            record.exc_info = None
        return True


def get_logger(name: str) -> logging.Logger:
    """A logger of the policy layer, with redaction attached once per logger."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger


def registered_secret_count() -> int:
    """How many secrets are registered (for tests and diagnostics; never the values)."""
    with _lock:
        return len(_secrets)


def register_secrets(values: Iterable[str | None]) -> None:
    """:func:`register_secret` for each value."""
    for value in values:
        register_secret(value)
