"""Retry decisions: transient only, full-jitter backoff, Retry-After as a floor."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from phx_images.net.retry import RetryPolicy, is_transient_status, parse_retry_after


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses(status: int) -> None:
    assert is_transient_status(status)


@pytest.mark.parametrize("status", [200, 301, 400, 401, 403, 404, 410, 418, 501])
def test_definite_statuses_are_not_retried(status: int) -> None:
    assert not is_transient_status(status)


def test_full_jitter_stays_within_the_exponential_envelope() -> None:
    policy = RetryPolicy(max_retries=5, base_s=1.0, cap_s=8.0, rng=random.Random(1))
    for n in range(6):
        delays = [policy.backoff(n) for _ in range(300)]
        envelope = min(8.0, 2.0**n)
        assert all(0 <= d <= envelope for d in delays)
        assert max(delays) > envelope * 0.8  # full jitter uses the whole range...
        assert min(delays) < envelope * 0.2  # ...not a fixed delay


def test_max_retries_bounds_attempts() -> None:
    policy = RetryPolicy(max_retries=2)
    assert policy.should_retry(0) and policy.should_retry(1) and not policy.should_retry(2)
    assert not RetryPolicy(max_retries=0).should_retry(0)


def test_retry_after_is_a_floor_and_too_long_gives_up() -> None:
    policy = RetryPolicy(base_s=0.1, max_wait_s=60, rng=random.Random(0))
    assert policy.delay(0, retry_after=7) >= 7
    assert policy.delay(0, retry_after=3600) is None


def test_parse_retry_after() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, 1)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0
