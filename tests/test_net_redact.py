"""Secrets never reach logs or exceptions: URL, header, text and logging redaction."""

from __future__ import annotations

import logging

from phx_images.net.errors import FetchError, TransientError
from phx_images.net.redact import (
    get_logger,
    redact_headers,
    redact_text,
    redact_url,
    register_secret,
)


def test_proxy_password_is_masked() -> None:
    assert redact_url("http://user:hunter2@proxy.example:8080") == "http://user:***@proxy.example:8080"
    assert "hunter2" not in redact_url("socks5://bob:hunter2@10.0.0.1:1080/")


def test_sensitive_query_params_are_masked() -> None:
    out = redact_url("https://cdn.example/p.jpg?w=1536&token=abc123&Sig=zzz&X-Amz-Signature=q")
    assert "abc123" not in out and "zzz" not in out and "=q" not in out
    assert "w=1536" in out and "token=***" in out


def test_headers_are_masked() -> None:
    out = redact_headers({"AUTHORIZATION": "tok", "Cookie": "a=b", "Accept": "text/html"})
    assert out == {"AUTHORIZATION": "***", "Cookie": "***", "Accept": "text/html"}


def test_registered_secret_is_scrubbed_anywhere() -> None:
    register_secret("very-secret-token-123")
    text = "curl: (56) failed with header AUTHORIZATION: very-secret-token-123 for x"
    assert "very-secret-token-123" not in redact_text(text)
    assert "very-secret-token-123" not in redact_text("Authorization=very-secret-token-123")
    bare = "server said: very-secret-token-123 is not valid"  # no URL, no header name
    assert redact_text(bare) == "server said: *** is not valid"


def test_exceptions_carry_only_redacted_urls() -> None:
    register_secret("pw-for-proxy-999")
    err = TransientError(
        "assessor", "http://h/p?token=t0k3n", "proxy http://u:pw-for-proxy-999@p:1 reset"
    )
    assert "t0k3n" not in str(err) and "pw-for-proxy-999" not in str(err)
    assert str(err).startswith("assessor: ")
    assert isinstance(err, FetchError) and err.source == "assessor"
    import pickle

    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.attempts == err.attempts


def test_logger_filter_redacts_arguments(caplog) -> None:
    register_secret("another-secret-abcdef")
    log = get_logger("phx_images.net.test_redact")
    with caplog.at_level(logging.INFO, logger="phx_images.net.test_redact"):
        log.info("calling %s with %s", "http://a:b-pass@h/x?key=k", "another-secret-abcdef")
    assert "another-secret-abcdef" not in caplog.text
    assert "b-pass" not in caplog.text and "key=***" in caplog.text
