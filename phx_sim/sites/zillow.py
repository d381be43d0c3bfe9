"""Zillow: a JavaScript challenge on every page, PerimeterX-style press & hold, Next.js data.

Why the challenge is real JavaScript: the adapters must use the browser for Zillow (as on the
real site, where plain HTTP clients are blocked). The page computes a token in JS and sets a
cookie; the server only accepts cookies whose nonce it signed and whose token is right, so no
client passes without executing the script (tests solve it in Python on purpose, see
:func:`js_token`).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any

from phx_sim.catalog import Photo, Property, norm_words
from phx_sim.context import SimContext
from phx_sim.http import Request, Response, json_response
from phx_sim.imaging import ZILLOW_WIDTHS
from phx_sim.sites.common import esc, money, not_found, page, script_json

JS_COOKIE = "zsim_js"
PX_COOKIE = "_px3"
JS_MAX_AGE_S = 6 * 3600
_SEARCH = re.compile(r"^/homes/(?P<slug>[^/]{1,300})_rb/?$")
_DETAIL = re.compile(r"^/homedetails/(?P<slug>[^/]{0,300})/(?P<zpid>\d{1,12})_zpid/?$")


def js_token(nonce: str) -> str:
    """The token the challenge script computes (FNV-1a then 1000 mixing rounds, 32-bit)."""
    h = 0x811C9DC5
    for ch in nonce:
        h = ((h ^ ord(ch)) * 0x01000193) & 0xFFFFFFFF
    for _ in range(1000):
        h ^= h >> 15
        h = (h * 0x2C1B3C6D) & 0xFFFFFFFF
    return format(h, "x")


CHALLENGE_JS = """
(function () {
  var n = %(nonce)s, h = 0x811c9dc5 >>> 0, i, r;
  for (i = 0; i < n.length; i++) { h = Math.imul((h ^ n.charCodeAt(i)) >>> 0, 0x01000193) >>> 0; }
  for (r = 0; r < 1000; r++) { h = (h ^ (h >>> 15)) >>> 0; h = Math.imul(h, 0x2c1b3c6d) >>> 0; }
  document.cookie = "zsim_js=" + n + "." + h.toString(16) + "; path=/; SameSite=Lax";
  if (document.cookie.indexOf("zsim_js=" + n) !== -1) { setTimeout(function () {
    location.reload(); }, 50); }
})();
"""

CAPTCHA_JS = """
(function () {
  var host = document.getElementById("px-captcha");
  var root = host.attachShadow({mode: "open"});
  root.innerHTML = '<div id="px-label" role="button" style="width:300px;height:90px;' +
    'display:flex;align-items:center;justify-content:center;border:2px solid #333;' +
    'border-radius:45px;font:600 18px sans-serif;user-select:none">Press &amp; Hold</div>';
  var holdMs = %(hold_ms)d, nonce = %(nonce)s, start = null, timer = null, sent = false;
  function finish() {
    if (sent || start === null) { return; }
    sent = true; timer = null;
    var held = performance.now() - start;
    fetch("/_px/verify", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({nonce: nonce, held_ms: held})})
      .then(function (r) { if (r.ok) { location.reload(); } else { sent = false; } });
  }
  host.addEventListener("mousedown", function (e) {
    if (!e.isTrusted || e.button !== 0) { return; }
    start = performance.now();
    timer = setTimeout(finish, holdMs);
  });
  function release(e) {
    if (start !== null && timer !== null && performance.now() - start >= holdMs) {
      clearTimeout(timer); finish(); return;
    }
    if (timer !== null) { clearTimeout(timer); timer = null; }
    if (!sent) { start = null; }
  }
  host.addEventListener("mouseup", release);
  host.addEventListener("mouseleave", release);
})();
"""


class Zillow:
    """The ``www.zillow.com`` imitation."""

    name = "zillow"

    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx
        self._seen_js: set[str] = set()
        # Search by the slug's words: a dict, not a scan (thousands of generated properties).
        self._by_words: dict[tuple[str, ...], Property] = {}
        for p in ctx.catalog.by_zpid.values():
            self._by_words.setdefault(tuple(norm_words(p.slug)), p)

    # -- anti-bot -----------------------------------------------------------------------
    def _js_ok(self, req: Request) -> bool:
        cookie = req.cookies.get(JS_COOKIE, "")
        nonce, _, token = cookie.rpartition(".")
        parts = nonce.split("-")
        if len(parts) != 3 or not parts[0].isdigit():
            return False
        ts, rand, sig = parts
        if sig != self.ctx.sign(f"js:{ts}-{rand}", 12):
            return False
        if time.time() - int(ts) > JS_MAX_AGE_S or token != js_token(nonce):
            return False
        if nonce not in self._seen_js:
            self._seen_js.add(nonce)
            self.ctx.stats.incr(self.name, "challenges_passed")
        return True

    def _challenge(self) -> Response:
        self.ctx.stats.incr(self.name, "challenges_served")
        ts, rand = str(int(time.time())), secrets.token_hex(4)
        nonce = f"{ts}-{rand}-{self.ctx.sign(f'js:{ts}-{rand}', 12)}"
        script = CHALLENGE_JS % {"nonce": json.dumps(nonce)}
        return page("Just a moment...", "<noscript>Please enable JavaScript to continue."
                    "</noscript><p>Checking your browser before accessing zillow.com.</p>"
                    f"<script>{script}</script>", 403, headers=[("cache-control", "no-store")])

    def _px_ok(self, req: Request) -> bool:
        cookie = req.cookies.get(PX_COOKIE, "")
        body, _, sig = cookie.rpartition("-")
        return bool(body) and sig == self.ctx.sign(f"px3:{body}", 16)

    def _captcha(self) -> Response:
        self.ctx.stats.incr(self.name, "captchas_served")
        hold_ms = int(float(self.ctx.knob(self.name, "captcha_hold_s", 2.0)) * 1000)
        ts_ms, rand = str(int(time.time() * 1000)), secrets.token_hex(4)
        base = f"{ts_ms}-{hold_ms}-{rand}"
        nonce = f"{base}-{self.ctx.sign(f'px:{base}', 12)}"
        script = CAPTCHA_JS % {"hold_ms": hold_ms, "nonce": json.dumps(nonce)}
        body = ("<div class=\"px-block\"><h1>Access to this page has been denied</h1>"
                "<p>Press &amp; Hold to confirm you are a human (and not a bot).</p>"
                "<div id=\"px-captcha\" style=\"display:inline-block\"></div>"
                "<script src=\"/_px/captcha.px-cdn.net/captcha.js\" async></script>"
                f"<script>{script}</script></div>")
        return page("Access to this page has been denied", body, 403,
                    headers=[("cache-control", "no-store")])

    def _verify(self, req: Request) -> Response:
        try:
            data = json.loads(req.body or b"null")
            nonce, held_ms = data["nonce"], float(data["held_ms"])
            ts_ms, hold_ms, rand, sig = str(nonce).split("-")
        except (ValueError, TypeError, KeyError):
            return json_response({"ok": False, "error": "bad verification request"}, 400)
        if sig != self.ctx.sign(f"px:{ts_ms}-{hold_ms}-{rand}", 12) or not ts_ms.isdigit():
            return json_response({"ok": False, "error": "unknown challenge"}, 403)
        need_ms = int(hold_ms) if hold_ms.isdigit() else 10**9
        elapsed_ms = time.time() * 1000 - int(ts_ms)
        if held_ms < need_ms - 100 or elapsed_ms < need_ms - 250:
            return json_response({"ok": False, "error": "not held long enough"}, 403)
        self.ctx.stats.incr(self.name, "captchas_passed")
        body = f"{int(time.time())}{secrets.token_hex(6)}"
        cookie = f"{PX_COOKIE}={body}-{self.ctx.sign(f'px3:{body}', 16)}; Path=/; HttpOnly"
        return json_response({"ok": True}, headers=[("set-cookie", cookie)])

    # -- pages ---------------------------------------------------------------------------
    async def handle(self, req: Request) -> Response:
        if not self._js_ok(req):
            return self._challenge()
        if req.path == "/_px/verify":
            if req.method != "POST":
                return json_response({"error": "use POST"}, 405)
            return self._verify(req)
        if req.method not in ("GET", "HEAD"):
            return json_response({"error": "method not allowed"}, 405)
        if req.path == "/":
            return page("Zillow: Real Estate, Apartments, Mortgages & Home Values",
                        "<h1>Zillow</h1><p>Find your next home.</p>")
        m = _SEARCH.match(req.path)
        if m:
            return self._search(m["slug"])
        m = _DETAIL.match(req.path)
        if m:
            prop = self.ctx.catalog.by_zpid.get(m["zpid"])
            if prop is None:
                return not_found("Zillow")
            rate = float(self.ctx.knob(self.name, "captcha_rate", 0.0))
            if (rate > 0 and not self._px_ok(req)
                    and self.ctx.faults.rng(self.name + ":captcha").random() < rate):
                return self._captcha()
            return self._detail(prop)
        return not_found("Zillow")

    def _photo_url(self, photo: Photo, width: int, ext: str = "jpg") -> str:
        return self.ctx.urls["zillow_photos"] + photo.paths["zillow"][f"cc_ft_{width}.{ext}"]

    def _detail_path(self, prop: Property) -> str:
        return f"/homedetails/{prop.slug}/{prop.ids['zpid']}_zpid/"

    def _search(self, slug: str) -> Response:
        found = self._by_words.get(tuple(norm_words(slug)))
        if found is None:
            return page(f"{slug.replace('-', ' ')} | Zillow",
                        "<h1>Search results</h1><p class=\"no-results\">No matching results"
                        "</p><p>Try a different address, city or ZIP.</p>"
                        "<script id=\"__NEXT_DATA__\" type=\"application/json\">"
                        + script_json({"props": {"pageProps": {"searchPageState": {
                            "cat1": {"searchResults": {"listResults": []}}}}}})
                        + "</script>")
        photos = found.site_photos(self.ctx.catalog, "zillow")
        result = {"zpid": found.ids["zpid"], "address": found.full_address,
                  "detailUrl": self._detail_path(found), "price": money(found.facts["price"]),
                  "beds": found.facts["beds"], "baths": found.facts["baths"],
                  "area": found.facts["sqft"],
                  "imgSrc": self._photo_url(photos[0], 384) if photos else None}
        data = {"props": {"pageProps": {"searchPageState": {"cat1": {"searchResults": {
            "listResults": [result]}}}}}}
        body = (f"<h1>Search results</h1><ul class=\"photo-cards\"><li><article>"
                f"<a href=\"{esc(self._detail_path(found))}\">{esc(found.full_address)}</a>"
                f"</article></li></ul>"
                f"<script id=\"__NEXT_DATA__\" type=\"application/json\">{script_json(data)}"
                "</script>")
        return page(f"{found.full_address} | Zillow", body)

    def _property_json(self, prop: Property) -> dict[str, Any]:
        catalog, facts = self.ctx.catalog, prop.facts
        photos = prop.site_photos(catalog, "zillow")
        responsive = [{
            "caption": photo.caption,
            "mixedSources": {
                "jpeg": [{"url": self._photo_url(photo, w, "jpg"), "width": w}
                         for w in ZILLOW_WIDTHS],
                "webp": [{"url": self._photo_url(photo, w, "webp"), "width": w}
                         for w in ZILLOW_WIDTHS],
            },
        } for photo in photos]
        nearby = []
        for key in catalog.carousels["zillow"][prop.key]:
            other = catalog.by_key[key]
            nearby.append({
                "zpid": int(other.ids["zpid"]),
                "address": {"streetAddress": other.street, "city": other.city,
                            "state": other.state, "zipcode": other.zip_code},
                "price": other.facts["price"],
                "miniCardPhotos": [{"url": catalog.carousel_url("zillow", key, self.ctx.urls)}],
            })
        acres = facts["lot_acres"]
        return {
            "zpid": int(prop.ids["zpid"]), "streetAddress": prop.street, "city": prop.city,
            "state": prop.state, "zipcode": prop.zip_code, "price": facts["price"],
            "homeStatus": "FOR_SALE", "bedrooms": facts["beds"], "bathrooms": facts["baths"],
            "livingArea": facts["sqft"], "yearBuilt": facts["year_built"],
            "lotAreaValue": acres if acres is not None else facts["lot_sqft"],
            "lotAreaUnits": "Acres" if acres is not None else "Square Feet",
            "description": facts["description"],
            "hiResImageLink": self._photo_url(photos[0], 1536) if photos else None,
            "resoFacts": {"hasPrivatePool": facts["pool"],
                          "garageParkingCapacity": facts["garage_spaces"],
                          "hoaFee": None if not facts["hoa_monthly"] else
                          f"${facts['hoa_monthly']} monthly",
                          "sewer": [facts["sewer"]]},
            "responsivePhotos": responsive,
            "nearbyHomes": nearby,
        }

    def _detail(self, prop: Property) -> Response:
        catalog = self.ctx.catalog
        prop_json = self._property_json(prop)
        zpid = prop.ids["zpid"]
        old_layout = catalog.position[prop.key] % 4 == 3
        if old_layout:
            cache = json.dumps({f'ForSaleDoubleScrollFullRenderQuery{{"zpid":{zpid}}}':
                                {"property": prop_json}})
            data_script = ("<script id=\"hdpApolloPreloadedData\" type=\"application/json\">"
                           f"{script_json({'apiCache': cache})}</script>")
        else:
            cache = json.dumps({f'ForSaleShopperPlatformFullRenderQuery{{"zpid":{zpid},'
                                f'"altId":null}}': {"property": prop_json}})
            data = {"props": {"pageProps": {"componentProps": {"gdpClientCache": cache,
                                                               "zpid": int(zpid)}}},
                    "page": "/homedetails/[...slug]", "buildId": "sim"}
            data_script = ("<script id=\"__NEXT_DATA__\" type=\"application/json\">"
                           f"{script_json(data)}</script>")
        similar = "".join(
            f"<li><a href=\"/homedetails/{esc(catalog.by_key[k].slug)}/"
            f"{esc(catalog.by_key[k].ids['zpid'])}_zpid/\"><img src=\""
            f"{esc(catalog.carousel_url('zillow', k, self.ctx.urls))}\" alt=\""
            f"{esc(catalog.by_key[k].full_address)}\"></a></li>"
            for k in catalog.carousels["zillow"][prop.key])
        f = prop.facts
        body = (f"<main><h1>{esc(prop.full_address)}</h1>"
                f"<p class=\"price\">{money(f['price'])}</p>"
                f"<p class=\"facts\">{f['beds']} bd · {f['baths']:g} ba · {f['sqft']:,} sqft</p>"
                f"<p class=\"description\">{esc(f['description'])}</p></main>"
                f"<section id=\"similar-homes\"><h2>Similar homes</h2><ul>{similar}</ul>"
                f"</section>{data_script}")
        return page(f"{prop.full_address} | MLS #{prop.ids['mls_number'] or ''} | Zillow", body)
