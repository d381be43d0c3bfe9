"""PolicyClient against real HTTP servers on loopback (timestamps measured server-side)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from phx_images.net.client import PolicyClient
from phx_images.net.errors import (
    Blocked,
    CircuitOpen,
    HttpStatusError,
    NotAllowed,
    TooLarge,
    TransientError,
)
from tests.test_net_support import (
    Hit,
    forward_proxy,
    make_settings,
    ok,
    origin_server,
    resetting_proxy,
    sequence,
)

TOKEN = "s3cr3t-assessor-token-XYZ"


def run(coro):
    return asyncio.run(coro)


def max_in_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, start in enumerate(times):
        while j < len(times) and times[j] < start + window:
            j += 1
        best = max(best, j - i)
    return best


# ------------------------------------------------------------------------------ rate ceiling


def test_ceiling_never_exceeded_under_concurrency(tmp_path: Path) -> None:
    with origin_server({"/x": ok()}) as origin:
        settings = make_settings(tmp_path, origin.url, max_rps=4.0)

        async def go() -> None:
            async with PolicyClient(settings) as client:
                calls = [client.fetch("redfin", origin.url + "/x") for _ in range(10)]
                await asyncio.gather(*calls)

        run(go())
        times = [h.at for h in origin.hits]
    assert len(times) == 10
    assert max_in_window(times) <= 4
    gaps = [b - a for a, b in zip(sorted(times), sorted(times)[1:], strict=False)]
    assert min(gaps) >= 0.24  # 1/max_rps, less a little scheduling noise


def test_retry_after_pauses_the_whole_source(tmp_path: Path) -> None:
    routes = {
        "/limited": sequence((429, {"Retry-After": "1"}, b"slow down"), (200, {}, b"ok")),
        "/other": ok(),
    }
    with origin_server(routes) as origin:
        settings = make_settings(tmp_path, origin.url, max_rps=20.0)

        async def go() -> PolicyClient:
            client = PolicyClient(settings, retry_base_s=0.01)
            first = await client.fetch("redfin", origin.url + "/limited")
            assert first.status == 200
            await client.fetch("redfin", origin.url + "/other")  # paused source: waits too
            await client.aclose()
            return client

        client = run(go())
        limited = origin.hits_for("/limited")
        other = origin.hits_for("/other")
    assert len(limited) == 2
    assert limited[1].at - limited[0].at >= 0.95
    assert other[0].at >= limited[0].at + 0.95
    metrics = client.metrics()["redfin"]
    assert metrics["throttles"] == 1 and metrics["retries"] == 1
    assert metrics["rate_rps"] < 20.0  # multiplicative decrease happened


def test_long_retry_after_fails_fast_instead_of_idling(tmp_path: Path) -> None:
    with origin_server({"/x": ok(b"", **{"Retry-After": "3600"})}) as origin:
        origin.routes["/x"] = lambda _h: (503, {"Retry-After": "3600"}, b"")
        settings = make_settings(tmp_path, origin.url)

        async def go() -> None:
            async with PolicyClient(settings, max_wait_s=5) as client:
                with pytest.raises(TransientError) as info:
                    await client.fetch("redfin", origin.url + "/x")
                assert info.value.retry_after == 3600
                with pytest.raises(TransientError, match="paused"):
                    await client.fetch("redfin", origin.url + "/x")

        started = time.monotonic()
        run(go())
        assert time.monotonic() - started < 3
        assert len(origin.hits) == 1


# ------------------------------------------------------------------------------ retries


@pytest.mark.parametrize("status,error", [(404, HttpStatusError), (401, HttpStatusError),
                                          (410, HttpStatusError), (403, Blocked)])
def test_definite_answers_are_not_retried(tmp_path: Path, status: int, error: type) -> None:
    with origin_server({"/x": lambda _h: (status, {}, b"no")}) as origin:
        settings = make_settings(tmp_path, origin.url, max_retries=3)

        async def go() -> None:
            async with PolicyClient(settings, retry_base_s=0.01) as client:
                with pytest.raises(error) as info:
                    await client.fetch("redfin", origin.url + "/x")
                assert info.value.status == status

        run(go())
        assert len(origin.hits) == 1


def test_transient_errors_are_retried_then_succeed(tmp_path: Path) -> None:
    replies = sequence((500, {}, b""), (502, {}, b""), (200, {}, b"finally"))
    with origin_server({"/x": replies}) as origin:
        settings = make_settings(tmp_path, origin.url, max_retries=3, breaker_failures=5)

        async def go() -> bytes:
            async with PolicyClient(settings, retry_base_s=0.01) as client:
                return (await client.fetch("redfin", origin.url + "/x")).content

        assert run(go()) == b"finally"
        assert len(origin.hits) == 3


def test_retries_exhausted_raise_transient_error(tmp_path: Path) -> None:
    with origin_server({"/x": lambda _h: (504, {}, b"")}) as origin:
        settings = make_settings(tmp_path, origin.url, max_retries=2, breaker_failures=10)

        async def go() -> None:
            async with PolicyClient(settings, retry_base_s=0.01) as client:
                with pytest.raises(TransientError) as info:
                    await client.fetch("redfin", origin.url + "/x")
                assert info.value.status == 504 and info.value.attempts == 3

        run(go())
        assert len(origin.hits) == 3  # 1 + max_retries


def test_connection_refused_is_transient(tmp_path: Path) -> None:
    with origin_server() as origin:
        url = origin.url
    settings = make_settings(tmp_path, url, max_retries=1, breaker_failures=10)

    async def go() -> None:
        async with PolicyClient(settings, retry_base_s=0.01) as client:
            with pytest.raises(TransientError) as info:
                await client.fetch("redfin", url + "/x")
            assert info.value.status is None and info.value.attempts == 2
            assert client.metrics()["redfin"]["connection_errors"] == 2

    run(go())


# ------------------------------------------------------------------------------ breaker


def test_breaker_opens_and_half_open_lets_exactly_one_probe(tmp_path: Path) -> None:
    state = {"fail": True}

    def route(_hit: Hit) -> tuple[int, dict[str, str], bytes]:
        if state["fail"]:
            return 500, {}, b""
        time.sleep(0.3)  # the probe is slow, so the other callers arrive while it is in flight
        return 200, {}, b"up"

    with origin_server({"/x": route}) as origin:
        settings = make_settings(
            tmp_path, origin.url, max_retries=0, breaker_failures=2, breaker_reset_s=0.5
        )

        async def go() -> PolicyClient:
            client = PolicyClient(settings)
            for _ in range(2):
                with pytest.raises(TransientError):
                    await client.fetch("redfin", origin.url + "/x")
            assert client.breaker_snapshot()["redfin"]["state"] == "open"
            with pytest.raises(CircuitOpen) as info:
                await client.fetch("redfin", origin.url + "/x")
            assert info.value.retry_at > time.time()
            assert len(origin.hits) == 2  # open: nothing reached the site

            await asyncio.sleep(0.6)
            state["fail"] = False
            results = await asyncio.gather(
                *(client.fetch("redfin", origin.url + "/x") for _ in range(5)),
                return_exceptions=True,
            )
            assert sum(1 for r in results if not isinstance(r, Exception)) == 1
            assert sum(1 for r in results if isinstance(r, CircuitOpen)) == 4
            assert len(origin.hits) == 3  # exactly one probe reached the site
            assert client.breaker_snapshot()["redfin"]["state"] == "closed"
            await client.fetch("redfin", origin.url + "/x")  # closed again: traffic flows
            await client.aclose()
            return client

        client = run(go())
        assert client.metrics()["redfin"]["circuit_open"] == 5


def test_failed_probe_reopens(tmp_path: Path) -> None:
    with origin_server({"/x": lambda _h: (503, {}, b"")}) as origin:
        settings = make_settings(
            tmp_path, origin.url, max_retries=0, breaker_failures=1, breaker_reset_s=0.3
        )

        async def go() -> None:
            async with PolicyClient(settings) as client:
                with pytest.raises(TransientError):
                    await client.fetch("redfin", origin.url + "/x")
                await asyncio.sleep(0.35)
                with pytest.raises(TransientError):  # the probe goes, and fails
                    await client.fetch("redfin", origin.url + "/x")
                snap = client.breaker_snapshot()["redfin"]
                assert snap["state"] == "open" and snap["opens"] == 2
                with pytest.raises(CircuitOpen):
                    await client.fetch("redfin", origin.url + "/x")

        run(go())
        assert len(origin.hits) == 2


# ------------------------------------------------------------------------------ allowlist


def test_off_list_host_is_refused_without_a_request(tmp_path: Path, caplog) -> None:
    with origin_server({"/x": ok()}) as listed, origin_server({"/x": ok()}) as elsewhere:
        settings = make_settings(tmp_path, listed.url)

        async def go() -> None:
            async with PolicyClient(settings) as client:
                for url in (elsewhere.url + "/x", "ftp://127.0.0.1/x", "file:///etc/passwd"):
                    with pytest.raises(NotAllowed):
                        await client.fetch("redfin", url)

        with caplog.at_level(logging.WARNING, logger="phx_images.net.allowlist"):
            run(go())
        assert elsewhere.hits == [] and listed.hits == []
        assert "not on the redfin allowlist" in caplog.text  # refusals are logged


def test_redirect_to_elsewhere_is_refused(tmp_path: Path) -> None:
    with origin_server({"/x": ok(b"elsewhere")}) as elsewhere:
        target = elsewhere.url + "/x"
        routes = {
            "/out": lambda _h: (302, {"Location": target}, b""),
            "/private": lambda _h: (302, {"Location": "http://10.0.0.1/x.jpg"}, b""),
            "/in": lambda _h: (301, {"Location": "/final"}, b""),
            "/final": ok(b"inside"),
        }
        with origin_server(routes) as origin:
            settings = make_settings(tmp_path, origin.url)

            async def go() -> None:
                async with PolicyClient(settings) as client:
                    with pytest.raises(NotAllowed):
                        await client.fetch("redfin", origin.url + "/out")
                    with pytest.raises(NotAllowed):
                        await client.fetch("redfin", origin.url + "/private")
                    resp = await client.fetch("redfin", origin.url + "/in")
                    assert resp.content == b"inside" and resp.url == origin.url + "/final"

            run(go())
        assert elsewhere.hits == []


def test_listed_name_resolving_to_loopback_needs_the_private_exception(tmp_path: Path) -> None:
    """``localhost`` is on the allowlist but resolves to 127.0.0.1: refused unless its origin
    is in allow_private_origins (SSRF guard through DNS, real resolver)."""
    with origin_server({"/x": ok()}) as origin:
        named = origin.url.replace("127.0.0.1", "localhost")

        async def go(private: list[str]) -> None:
            async with PolicyClient(make_settings(tmp_path, named, private=private)) as client:
                await client.fetch("redfin", named + "/x")

        with pytest.raises(NotAllowed, match="private address"):
            run(go([]))
        assert origin.hits == []
        run(go([named]))
        assert len(origin.hits) == 1


def test_too_many_redirects(tmp_path: Path) -> None:
    with origin_server({"/loop": lambda _h: (302, {"Location": "/loop"}, b"")}) as origin:
        settings = make_settings(tmp_path, origin.url)

        async def go() -> None:
            async with PolicyClient(settings) as client:
                with pytest.raises(NotAllowed, match="redirects"):
                    await client.fetch("redfin", origin.url + "/loop")

        run(go())
        assert len(origin.hits) == 6  # the first request and 5 redirect hops


# ------------------------------------------------------------------------------ size cap


def test_size_cap_announced_and_streamed(tmp_path: Path) -> None:
    body = b"x" * 300_000
    routes = {
        "/announced": ok(body),
        "/streamed": lambda _h: (200, {"Content-Length": "-"}, body),
        "/small": lambda _h: (200, {"Content-Length": "-"}, b"y" * 1000),
    }
    with origin_server(routes) as origin:
        settings = make_settings(tmp_path, origin.url, max_page_bytes=100_000)

        async def go() -> None:
            async with PolicyClient(settings) as client:
                with pytest.raises(TooLarge):
                    await client.fetch("redfin", origin.url + "/announced")
                with pytest.raises(TooLarge):
                    await client.fetch("redfin", origin.url + "/streamed")
                with pytest.raises(TooLarge):  # explicit cap wins over the settings
                    await client.fetch("redfin", origin.url + "/small", max_bytes=999)
                small = await client.fetch("redfin", origin.url + "/small", kind="image")
                assert len(small.content) == 1000
                metrics = client.metrics()["redfin"]
                assert metrics["too_large"] == 3
                assert metrics["bytes"] < 200_000  # the streamed body was cut, not drained

        run(go())


# ------------------------------------------------------------------------------ secrets


def test_token_header_only_to_the_base_origin_and_never_logged(tmp_path: Path, caplog) -> None:
    with origin_server({"/img": ok(b"img")}) as cdn:
        routes = {
            "/api": ok(b"{}"),
            "/to-cdn": lambda _h: (302, {"Location": cdn.url + "/img"}, b""),
            "/fail": lambda _h: (500, {}, b""),
        }
        with origin_server(routes) as origin:
            settings = make_settings(tmp_path, origin.url, asset_urls=[cdn.url], max_retries=1)

            async def go() -> None:
                async with PolicyClient(settings, retry_base_s=0.01) as client:
                    await client.fetch(
                        "assessor", origin.url + "/api", headers={"Authorization": "adapter-x"}
                    )
                    await client.fetch("assessor", origin.url + "/to-cdn")
                    with pytest.raises(TransientError) as info:
                        await client.fetch(
                            "assessor", origin.url + "/fail", params={"token": TOKEN}
                        )
                    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value.args)

            with caplog.at_level(logging.DEBUG):
                run(go())
            assert origin.hits_for("/api")[0].headers["authorization"] == TOKEN
            assert cdn.hits[0].headers.get("authorization") is None  # not sent off-origin
            assert len(origin.hits_for("/fail")) == 2
        assert TOKEN not in caplog.text
        assert "token=***" in caplog.text


# ------------------------------------------------------------------------------ proxies


def test_rotation_away_from_a_broken_proxy(tmp_path: Path, caplog) -> None:
    with origin_server({"/x": ok()}) as origin, resetting_proxy() as bad, forward_proxy() as good:
        bad_url = bad.url.replace("http://", "http://user:pr0xy-pa55@")
        settings = make_settings(
            tmp_path, origin.url, proxies=[bad_url, good.url], max_retries=2
        )

        async def go() -> PolicyClient:
            client = PolicyClient(settings, retry_base_s=0.01)
            for _ in range(6):
                assert (await client.fetch("redfin", origin.url + "/x")).status == 200
            await client.aclose()
            return client

        with caplog.at_level(logging.INFO):
            client = run(go())
        assert bad.connections == 1  # failed once, then benched
        assert good.connections == 6
        assert all(h.headers.get("via") is None for h in origin.hits)  # proxy strips nothing
        pool = client.metrics()["_proxies"]["pool"]
        assert pool[0]["strikes"] == 1 and pool[0]["benched_for_s"] > 0
        assert client.breaker_snapshot()["redfin"]["failures"] == 0  # proxy fault, not site's
        assert "pr0xy-pa55" not in caplog.text and "user:***@" in caplog.text


def test_all_proxies_broken_is_transient_not_direct(tmp_path: Path) -> None:
    with origin_server({"/x": ok()}) as origin, resetting_proxy() as bad:
        settings = make_settings(tmp_path, origin.url, proxies=[bad.url], max_retries=2)

        async def go() -> None:
            async with PolicyClient(settings, retry_base_s=0.01) as client:
                with pytest.raises(TransientError, match="benched"):
                    await client.fetch("redfin", origin.url + "/x")

        run(go())
        assert origin.hits == []  # never fell back to a direct connection
        assert bad.connections == 1
