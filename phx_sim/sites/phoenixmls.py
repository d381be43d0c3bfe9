"""PhoenixMLS Search: a JS autocomplete search box, listing pages with a gallery and fields.

Why the search is client-side: on the real site the autocomplete entries only exist after the
page's script ran, so the adapters drive it with the browser (or call the JSON endpoint the
script calls, which the simulator also serves).
"""

from __future__ import annotations

import re

from phx_sim.catalog import Property
from phx_sim.context import SimContext
from phx_sim.http import Request, Response, json_response
from phx_sim.sites.common import WordIndex, esc, money, not_found, page

_LISTING = re.compile(r"^/mls/(?P<slug>[^/]{0,300})-mls_(?P<n>\d{1,10})/?$")

SEARCH_JS = """
(function () {
  var input = document.getElementById("search-input");
  var list = document.getElementById("search-results");
  var seq = 0;
  input.addEventListener("input", function () {
    var q = input.value, mine = ++seq;
    if (q.trim().length < 3) { list.innerHTML = ""; return; }
    fetch("/simple-search/autocomplete?q=" + encodeURIComponent(q))
      .then(function (r) { return r.json(); })
      .then(function (items) {
        if (mine !== seq) { return; }
        list.innerHTML = "";
        items.forEach(function (item) {
          var li = document.createElement("li");
          li.setAttribute("role", "treeitem");
          li.setAttribute("data-url", item.url);
          li.textContent = item.label;
          li.addEventListener("click", function () { location.href = item.url; });
          list.appendChild(li);
        });
      });
  });
  document.getElementById("search-button").addEventListener("click", function () {
    location.href = "/mls/search";
  });
})();
"""

GALLERY_JS = """
(function () {
  var modal = document.getElementById("gallery-modal");
  var big = document.getElementById("gallery-modal-img");
  document.querySelectorAll(".gallery-thumb").forEach(function (img) {
    img.addEventListener("click", function () {
      big.src = img.src.replace(/-t\\.jpg$/, "-o.jpg");
      big.alt = img.alt;
      modal.hidden = false;
    });
  });
  modal.addEventListener("click", function () { modal.hidden = true; });
})();
"""


def listing_path(prop: Property) -> str:
    return f"/mls/{prop.slug.lower()}-mls_{prop.ids['mls_number']}"


def label(prop: Property) -> str:
    return f"{prop.full_address} / {prop.ids['mls_number']} (MLS #)"


class PhoenixMLS:
    """The ``phoenixmlssearch.com`` imitation."""

    name = "phoenixmls"

    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx
        self._index = WordIndex((p, (label(p),)) for p in ctx.catalog.by_mls.values())

    async def handle(self, req: Request) -> Response:
        if req.method not in ("GET", "HEAD"):
            return json_response({"error": "method not allowed"}, 405)
        path = req.path
        if path in ("/", "/simple-search", "/simple-search/"):
            return self._search_page()
        if path == "/simple-search/autocomplete":
            return self._autocomplete(req.arg("q", "") or "")
        if path in ("/mls/search", "/mls/search/"):
            return self._all()
        m = _LISTING.match(path)
        if m:
            prop = self.ctx.catalog.by_mls.get(m["n"])
            if prop is None:
                return not_found("PhoenixMLS Search")
            return self._listing(prop)
        return not_found("PhoenixMLS Search")

    def _search_page(self) -> Response:
        body = ("<h1>Simple Search</h1><form onsubmit=\"return false\">"
                "<input id=\"search-input\" type=\"search\" autocomplete=\"off\" "
                "placeholder=\"Address, city, ZIP or MLS #\">"
                "<button id=\"search-button\" type=\"button\">Search</button></form>"
                "<ul role=\"tree\" id=\"search-results\"></ul>"
                f"<script>{SEARCH_JS}</script>")
        return page("Simple Search | PhoenixMLS Search", body)

    def _autocomplete(self, q: str) -> Response:
        q = q[:200]
        if len(q.strip()) < 3:
            return json_response([])
        items = [{"label": label(p), "url": listing_path(p)}
                 for p in self._index.find(q, partial_last=True)]
        return json_response(items[:10])

    def _all(self) -> Response:
        rows = "".join(f"<li><a class=\"listing-link\" href=\"{esc(listing_path(p))}\">"
                       f"{esc(label(p))}</a></li>" for p in self.ctx.catalog.by_mls.values())
        return page("Search results | PhoenixMLS Search",
                    f"<h1>{len(self.ctx.catalog.by_mls)} listings</h1>"
                    f"<ul class=\"search-results\">{rows}</ul>")

    def _listing(self, prop: Property) -> Response:
        catalog, f = self.ctx.catalog, prop.facts
        asset = self.ctx.urls["phoenixmls_photos"]
        thumbs = []
        for photo in prop.site_photos(catalog, "phoenixmls"):
            raw = catalog.raw_photos[photo.id]
            thumbs.append(
                f"<img class=\"gallery-thumb\" src=\"{esc(asset + photo.paths['phoenixmls']['t'])}"
                f"\" alt=\"{esc(photo.caption)}\" data-photo-key=\"{esc(raw['pmls_key'])}\">")
        fields = [
            ("Price", money(f["price"])), ("Beds", str(f["beds"])),
            ("Baths", f"{f['baths']:g}"), ("Sqft", f"{f['sqft']:,}"),
            ("Lot", f["lot_display"]), ("Garage", f"{f['garage_spaces']} Car Garage"),
            ("HOA", f["hoa"]), ("Pool", "Private" if f["pool"] else "None"),
            ("Sewer", f["sewer"]), ("Year Built", str(f["year_built"])),
            ("Elementary School", f["elementary_school"]),
            ("Middle School", f["middle_school"]), ("High School", f["high_school"]),
        ]
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in fields)
        similar = "".join(
            f"<li><a href=\"{esc(listing_path(catalog.by_key[k]))}\"><img class=\"similar-thumb\""
            f" src=\"{esc(catalog.carousel_url('phoenixmls', k, self.ctx.urls))}\" alt=\""
            f"{esc(catalog.by_key[k].full_address)}\"></a></li>"
            for k in catalog.carousels["phoenixmls"][prop.key])
        body = (f"<h1 class=\"listing-address\">{esc(prop.full_address)}</h1>"
                f"<p class=\"mls-number\">MLS # {esc(prop.ids['mls_number'])}</p>"
                f"<div class=\"gallery\">{''.join(thumbs)}</div>"
                "<div id=\"gallery-modal\" hidden><img id=\"gallery-modal-img\" src=\"\" alt=\"\">"
                "</div>"
                f"<table class=\"listing-fields\">{rows}</table>"
                f"<section class=\"similar-listings\"><h2>Similar listings</h2><ul>{similar}</ul>"
                f"</section><script>{GALLERY_JS}</script>")
        return page(f"{prop.full_address} | MLS # {prop.ids['mls_number']} | PhoenixMLS Search",
                    body)
