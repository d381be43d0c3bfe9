"""Static HTML gallery: one page per property and an index of all properties.

Why static and relative: the store may be a local folder opened straight from disk or a bucket
served by any static host; relative links work in both, with no server code. Every string on
the page (captions, addresses, URLs) comes from outside and is hostile: everything is escaped,
only http(s) links are made clickable, and a Content-Security-Policy forbids scripts outright.
"""

from __future__ import annotations

import html
import io
from collections.abc import Iterable
from urllib.parse import quote

from PIL import Image

from phx_images.store import ImageStore
from phx_images.store.models import Manifest, PhotoRecord

THUMB_SIZE = 320
_CSP = ("default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
        "base-uri 'none'; form-action 'none'")
_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;background:#fafafa;color:#222}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:1rem}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.5rem}
.card img{width:100%;height:auto;display:block}
.meta{font-size:.85rem;word-break:break-all}
.cat{font-weight:600}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _link(url: str, label: str) -> str:
    """A clickable link only for http(s); anything else (javascript:, data:) stays text."""
    if url.lower().startswith(("http://", "https://")):
        return f'<a href="{_e(url)}" rel="noopener noreferrer nofollow">{_e(label)}</a>'
    return _e(label)


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{_CSP}\">"
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body>{body}</body></html>\n"
    )


def thumbnail(data: bytes, size: int = THUMB_SIZE) -> bytes:
    """A small JPEG of a stored (already standardized, trusted) photo."""
    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (size, size))
        im = im.convert("RGB")
        im.thumbnail((size, size), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=80)
        return buf.getvalue()


def _photo_card(photo: PhotoRecord, thumb: str) -> str:
    sources = "".join(
        f"<li>{_e(s.source)}: {_link(s.url, s.url)}"
        + (f" — <q>{_e(s.caption)}</q>" if s.caption else "") + "</li>"
        for s in photo.sources
    )
    folded = [c for c in photo.copies if c.url != photo.kept_url]
    copies = "".join(
        f"<li>{_e(c.source)} {_e(c.width)}×{_e(c.height)} {_e(c.format)}: "
        f"{_link(c.url, c.url)}</li>" for c in folded
    )
    return (
        f'<div class="card" data-photo-id="{_e(photo.id)}">'
        f'<a href="{_e(quote(photo.name))}"><img src="{_e(thumb)}" alt="{_e(photo.subject)}" '
        f'width="{THUMB_SIZE}"></a>'
        f'<div class="meta"><div class="cat">{_e(photo.loc)} / {_e(photo.subject)} '
        f'({_e(photo.confidence)})</div><div>{_e(photo.name)} — {_e(photo.width)}×'
        f'{_e(photo.height)}</div><div>Sources:</div><ul class="sources">{sources}</ul>'
        + (f'<div>{len(folded)} duplicate cop{"y" if len(folded) == 1 else "ies"} folded in:'
           f'</div><ul class="duplicates">{copies}</ul>' if folded else "")
        + "</div></div>"
    )


def write_property_page(store: ImageStore, manifest: Manifest) -> str:
    """Write ``processed/{hash}/index.html`` (and missing thumbnails); returns its key."""
    folder = f"processed/{manifest.property_hash}"
    cards = []
    for photo in manifest.photos:
        thumb = f"thumbs/{photo.blob_sha[:16]}.jpg"
        if not store.fs.exists(f"{folder}/{thumb}"):
            store.fs.write_bytes(f"{folder}/{thumb}",
                                 thumbnail(store.fs.read_bytes(f"{folder}/{photo.name}")))
        cards.append(_photo_card(photo, thumb))
    title = manifest.address or manifest.property_hash
    body = (
        f'<p><a href="../../index.html">All properties</a></p><h1>{_e(title)}</h1>'
        f"<p>{len(manifest.photos)} photos · property {_e(manifest.property_hash)}</p>"
        f'<div class="grid">{"".join(cards)}</div>'
    )
    key = f"{folder}/index.html"
    store.fs.write_bytes(key, _page(title, body).encode())
    return key


def build_gallery(store: ImageStore, property_hashes: Iterable[str] | None = None) -> str:
    """Write every property's page and the index at the store root; returns the index key."""
    hashes = sorted(property_hashes) if property_hashes is not None else store.property_hashes()
    for property_hash in hashes:
        manifest = store.read_manifest(property_hash)
        if manifest is not None:
            write_property_page(store, manifest)
    return write_index(store, hashes)


def write_index(store: ImageStore, property_hashes: Iterable[str] | None = None) -> str:
    """Write only the index (every property's page is written when the property is stored,
    so a run's coordinator need not redo them); returns the index key."""
    hashes = sorted(property_hashes) if property_hashes is not None else store.property_hashes()
    rows = []
    for property_hash in hashes:
        manifest = store.read_manifest(property_hash)
        if manifest is None:
            continue
        cover = ""
        if manifest.photos:
            cover = (f'<img src="processed/{_e(property_hash)}/thumbs/'
                     f'{_e(manifest.photos[0].blob_sha[:16])}.jpg" alt="cover" '
                     f'width="{THUMB_SIZE}">')
        rows.append(
            f'<div class="card" data-property="{_e(property_hash)}">'
            f'<a href="processed/{_e(property_hash)}/index.html">{cover}'
            f"<div class=\"cat\">{_e(manifest.address or property_hash)}</div></a>"
            f'<div class="meta">{len(manifest.photos)} photos</div></div>'
        )
    body = f'<h1>Properties</h1><div class="grid">{"".join(rows)}</div>'
    store.fs.write_bytes("index.html", _page("Properties", body).encode())
    return "index.html"
