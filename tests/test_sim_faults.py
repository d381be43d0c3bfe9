"""Every fault knob, the fixed bad images, the proxies, the control endpoints and the stats.

Each test uses its own simulator (``fresh_sim``) so faults and counters never leak.
"""

from __future__ import annotations

import io
import json
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from curl_cffi import requests
from PIL import Image

from phx_sim import FaultError, Simulator
from phx_sim.sites.cdn import bomb_png


def get(url: str, **kw: Any) -> requests.Response:
    kw.setdefault("impersonate", "chrome")
    kw.setdefault("allow_redirects", False)
    kw.setdefault("timeout", 20)
    return requests.get(url, **kw)


def assessor(sim: Any, path: str = "/parcel/207-22-123", **kw: Any) -> requests.Response:
    return get(sim.urls["assessor"] + path,
               headers={"AUTHORIZATION": sim.env()["PHX_ASSESSOR__TOKEN"]}, **kw)


def first_photo(sim: Any, site: str) -> dict[str, Any]:
    truth = sim.truth()
    return next(p for p in truth["photos"] if site in p["best_per_site"])


def test_latency(fresh_sim: Any) -> None:
    t0 = time.monotonic()
    assert assessor(fresh_sim).status_code == 200
    base = time.monotonic() - t0
    fresh_sim.set_faults("assessor", {"latency_ms": [300, 350]})
    t0 = time.monotonic()
    assert assessor(fresh_sim).status_code == 200
    assert time.monotonic() - t0 >= 0.3 > base


def test_handshake_costs_once_per_connection(fresh_sim: Any) -> None:
    fresh_sim.set_faults("phoenixmls", {"handshake_ms": 300})
    parts = urlsplit(fresh_sim.urls["phoenixmls"])
    took = []
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        for _ in range(2):
            t0 = time.monotonic()
            sock.sendall(b"GET /simple-search/autocomplete?q=4732 HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while b"]" not in data:
                data += sock.recv(65536)
            took.append(time.monotonic() - t0)
    assert took[0] >= 0.3 > took[1]
    assert fresh_sim.stats()["phoenixmls"]["connections"] == 1


def test_rate_limit_429_with_retry_after(fresh_sim: Any) -> None:
    fresh_sim.set_faults("redfin", {"rate_limit": {"rps": 1, "burst": 2}})
    url = fresh_sim.urls["redfin"] + "/"
    codes = [get(url) for _ in range(4)]
    assert [r.status_code for r in codes] == [200, 200, 429, 429]
    retry = codes[2].headers["Retry-After"]
    assert retry.isdigit() and int(retry) >= 1
    # the bucket is shared with the photo port: the CDN is limited too
    assert get(fresh_sim.urls["redfin_photos"] + "/_bad/empty.jpg").status_code == 429
    time.sleep(1.05)
    assert get(url).status_code == 200
    stats = fresh_sim.stats()
    assert stats["redfin"]["status_429"] == 2 and stats["redfin"]["rps_violations"] == 2
    assert stats["redfin_photos"]["status_429"] == 1


def test_503_share_is_seeded(fresh_sim: Any) -> None:
    fresh_sim.set_faults("phoenixmls", {"error_503_rate": 0.5})
    codes = [get(fresh_sim.urls["phoenixmls"] + "/simple-search/").status_code
             for _ in range(30)]
    assert set(codes) == {200, 503}
    assert 5 <= codes.count(503) <= 25
    fresh_sim.set_faults("phoenixmls", {"error_503_rate": 1.0})
    r = get(fresh_sim.urls["phoenixmls"] + "/simple-search/")
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert fresh_sim.stats()["phoenixmls"]["status_503"] == codes.count(503) + 1
    # the same seed gives the same sequence
    with Simulator(seed=7, cache_dir=fresh_sim.cache_dir,
                   faults={"phoenixmls": {"error_503_rate": 0.5}}) as again:
        codes2 = [get(again.urls["phoenixmls"] + "/simple-search/").status_code
                  for _ in range(30)]
    assert codes2 == codes


def _raw_request(url: str, path: str) -> bytes:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return sock.recv(65536)


def test_reset_is_a_real_tcp_reset(fresh_sim: Any) -> None:
    fresh_sim.set_faults("phoenixmls", {"reset_rate": 1.0})
    with pytest.raises(ConnectionResetError):
        _raw_request(fresh_sim.urls["phoenixmls"], "/simple-search/")
    with pytest.raises(requests.exceptions.RequestException):
        get(fresh_sim.urls["phoenixmls"] + "/simple-search/")
    assert fresh_sim.stats()["phoenixmls"]["resets"] == 2
    fresh_sim.set_faults("phoenixmls", {})
    assert get(fresh_sim.urls["phoenixmls"] + "/simple-search/").status_code == 200


def test_keep_alive_reuses_connections(fresh_sim: Any) -> None:
    parts = urlsplit(fresh_sim.urls["phoenixmls"])
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        for _ in range(3):
            sock.sendall(b"GET /simple-search/autocomplete?q=4732 HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while b"]" not in data:
                data += sock.recv(65536)
            assert data.startswith(b"HTTP/1.1 200")


def test_trickle(fresh_sim: Any) -> None:
    whole = assessor(fresh_sim).content
    fresh_sim.set_faults("assessor", {"trickle": {"rate": 1.0, "bytes_per_s": 300}})
    t0 = time.monotonic()
    slow = assessor(fresh_sim)
    elapsed = time.monotonic() - t0
    assert slow.content == whole
    assert elapsed >= 0.8 * len(whole) / 300 - 0.2 and elapsed > 0.4


@pytest.mark.parametrize("knob", ["truncated_image_rate", "html_image_rate", "bomb_image_rate"])
def test_image_faults(fresh_sim: Any, knob: str) -> None:
    photo = first_photo(fresh_sim, "phoenixmls")
    url = photo["best_per_site"]["phoenixmls"]
    good = get(url).content
    Image.open(io.BytesIO(good)).load()
    fresh_sim.set_faults("phoenixmls", {knob: 1.0})
    r = get(url)
    assert r.status_code == 200
    if knob == "truncated_image_rate":
        assert r.content == good[: len(good) // 2]
        with pytest.raises(OSError):
            Image.open(io.BytesIO(r.content)).load()
    elif knob == "html_image_rate":
        assert r.headers["Content-Type"] == "image/jpeg"
        assert r.content.lstrip().lower().startswith(b"<!doctype html")
    else:
        with pytest.raises(Image.DecompressionBombError):
            Image.open(io.BytesIO(r.content))
    # pages of the same site are not images: untouched
    page = get(fresh_sim.urls["phoenixmls"] + "/simple-search/")
    assert page.status_code == 200 and b"search-input" in page.content


def test_redirect_out(fresh_sim: Any) -> None:
    fresh_sim.set_faults("redfin", {"redirect_out_rate": 1.0})
    r = get(fresh_sim.urls["redfin"] + "/stingray/do/location-autocomplete?location=4732")
    assert r.status_code == 302
    assert r.headers["Location"].startswith(fresh_sim.urls["elsewhere"] + "/stingray/")


def test_fixed_bad_images(fresh_sim: Any) -> None:
    base = fresh_sim.urls["zillow_photos"] + "/_bad/"
    bomb = get(base + "bomb.png").content
    assert len(bomb) < 1_000_000 and bomb == bomb_png()
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(bomb))
    huge = get(base + "huge.png").content
    assert huge[16:24] == (100_000).to_bytes(4, "big") * 2
    with pytest.raises(OSError):
        Image.open(io.BytesIO(get(base + "truncated.jpg").content)).load()
    html = get(base + "html.jpg")
    assert html.headers["Content-Type"] == "image/jpeg" and b"<html" in html.content
    assert get(base + "empty.jpg").content == b""
    assert get(base + "redirect-out.jpg").headers["Location"].startswith(
        fresh_sim.urls["elsewhere"])
    assert get(base + "redirect-private.jpg").headers["Location"] == "http://10.0.0.1/x.jpg"
    assert get(base + "nope.jpg").status_code == 404


def test_proxies(fresh_sim: Any) -> None:
    good, bad = fresh_sim.urls["proxy_good"], fresh_sim.urls["proxy_bad"]
    target = fresh_sim.urls["redfin"] + "/stingray/do/location-autocomplete?location=4732+W&v=2"
    r = get(target, proxies={"http": good})
    assert r.status_code == 200 and r.text.startswith("{}&&")
    assert "phx-sim-proxy" in r.headers.get("Via", "")
    with pytest.raises(requests.exceptions.RequestException):
        get(target, proxies={"http": bad})
    refused = get("http://10.0.0.1/x.jpg", proxies={"http": good})
    assert refused.status_code == 403
    stats = fresh_sim.stats()
    assert stats["proxy_good"]["requests"] == 1 and stats["redfin"]["requests"] == 1
    assert stats["proxy_bad"]["resets"] >= 1


def test_stats_counts_and_reset(fresh_sim: Any) -> None:
    for _ in range(6):
        assessor(fresh_sim)
    assessor(fresh_sim, "/parcel/000-00-000")
    get(fresh_sim.urls["assessor"] + "/parcel/207-22-123")  # no token
    get(fresh_sim.urls["assessor"] + "/_sim/stats")  # control: not counted
    stats = requests.get(fresh_sim.urls["control"] + "/_sim/stats").json()["assessor"]
    assert stats["requests"] == 8
    assert stats["by_status"] == {"200": 6, "404": 1, "401": 1}
    assert stats["peak_rps"] >= 5 and stats["bytes"] > 0
    page = get(fresh_sim.urls["zillow"] + "/")
    assert page.status_code == 403
    assert fresh_sim.stats()["zillow"]["challenges_served"] == 1
    r = requests.post(fresh_sim.urls["control"] + "/_sim/stats/reset")
    assert r.status_code == 200
    after = fresh_sim.stats()
    assert after["assessor"]["requests"] == 0 and after["assessor"]["by_status"] == {}
    assert after["zillow"]["challenges_served"] == 0


def test_peak_rps_is_a_one_second_window(fresh_sim: Any) -> None:
    for _ in range(3):
        assessor(fresh_sim)
        time.sleep(0.55)
    assert fresh_sim.stats()["assessor"]["peak_rps"] == 2


def test_faults_endpoint(fresh_sim: Any) -> None:
    url = fresh_sim.urls["control"] + "/_sim/faults"
    ok = requests.put(url + "/zillow", data=json.dumps({"captcha_rate": 0.5}))
    assert ok.status_code == 200
    assert requests.get(url).json() == {"zillow": {"captcha_rate": 0.5}}
    cases = {
        "{not json": "not valid JSON",
        "[1, 2]": "JSON object",
        '{"reset_rate": 2}': "reset_rate",
        '{"reset_rate": "0.5"}': "reset_rate",
        '{"latency_ms": [5]}': "latency_ms",
        '{"rate_limit": {"rps": 0}}': "rate_limit",
        '{"trickle": {"rate": 1, "bytes_per_s": 0}}': "trickle",
        '{"warp_speed": 1}': "warp_speed",
        '{"error_503_rate": NaN}': "error_503_rate",
    }
    for body, message in cases.items():
        r = requests.put(url + "/redfin", data=body)
        assert r.status_code == 400, body
        assert message in r.json()["error"], (body, r.json())
    r = requests.put(url + "/nosuchsite", data="{}")
    assert r.status_code == 400 and "unknown site" in r.json()["error"]
    r = requests.put(url + "/zillow", data=b"\xff\xfe")
    assert r.status_code == 400
    assert requests.get(url).json() == {"zillow": {"captcha_rate": 0.5}}
    with pytest.raises(FaultError):
        fresh_sim.set_faults("redfin", {"reset_rate": -1})
    with pytest.raises(FaultError):
        Simulator(faults={"zillow": {"nope": 1}})


def test_garbage_does_not_crash_the_server(fresh_sim: Any) -> None:
    reply = _raw_request(fresh_sim.urls["zillow"], "/ \x00\x01 nonsense")
    assert reply.startswith(b"HTTP/1.1 400")
    parts = urlsplit(fresh_sim.urls["redfin"])
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00garbage-tls-hello\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 400")
    long_q = "x" * 5000
    assert get(fresh_sim.urls["phoenixmls"] + "/simple-search/autocomplete?q="
               + long_q).json() == []
    r = get(fresh_sim.urls["zillow"] + "/homedetails/..%2F..%2Fetc%2Fpasswd/1_zpid/")
    assert r.status_code == 403  # the challenge comes first, nothing else leaks
    assert assessor(fresh_sim).status_code == 200
