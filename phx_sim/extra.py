"""Generated properties: the sample catalog grown by N further properties of K photos each.

Why: benchmarks and fault tests need more listings than the 32 hand-checked sample ones, with
the same structures and the same guarantees, and the sample (its CSV, truth, cache files) must
not move at all when they are added. So the extras are a separate, deterministic layer on top
of the sample catalog:

- Photos come from a *pool* of validated recipes that depends only on the seed. Candidate ``i``
  is drawn from its own random stream, and a candidate is accepted when it is valid against the
  sample photos and every earlier accepted one (the sample's small-render checks, with one
  difference explained in :meth:`_Pool._check`). The pool is therefore prefix-stable: growing
  it never changes its first entries, so it is cached once per seed (``extra-pool-v1.json``)
  and serves every N and K; only a larger N x K than cached costs generation time (~6-7 ms
  per photo on one core).
- Properties, addresses, ids and facts come from one random stream per seed, property after
  property, so the first M extras are the same for every N >= M (for a given K). They are cheap
  (milliseconds), so they are not cached.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from pathlib import Path
from typing import Any

import numpy as np

from phx_sim import imaging
from phx_sim.catalog import (
    CATALOG_VERSION,
    CHECK_SCALE,
    CHECK_SIZE,
    CITIES,
    CORE_SUBJECTS,
    DISTINCT_MIN,
    EXTRA_SUBJECTS,
    ORDER,
    PHOTO_SITES,
    STREET_NAMES,
    SUBJECT_CAPTIONS,
    UNKNOWN_STREETS,
    VARIANT_MAX,
    VARIANT_NEAR,
    CatalogError,
    _check_variants,
    _facts,
    atomic_write,
)
from phx_sim.imaging import CHECKED_VARIANTS, VARIANTS, Recipe

POOL_VERSION = 1
DEFAULT_EXTRA_PHOTOS = 6
MAX_EXTRA_PROPERTIES = 100_000
MAX_EXTRA_PHOTOS = 24          # per property, like the sample's largest listings
MAX_EXTRA_PHOTOS_TOTAL = 20_000  # N x K: the pool gets slow to grow (and crowded) beyond this
MAX_CONSECUTIVE_REJECTS = 1000

# Real Phoenix-metro street names that the sample catalog does not use: an extra property never
# shares a street (name and direction) with a sample property, a neighbour parcel or an unknown
# address, so every search about the sample answers exactly as without extras.
EXTRA_STREET_NAMES: tuple[str, ...] = (
    "Dunlap Ave", "Union Hills Dr", "Deer Valley Rd", "Bethany Home Rd", "McDowell Rd",
    "Van Buren St", "Broadway Rd", "Southern Ave", "Dobson Rd", "Alma School Rd", "Higley Rd",
    "Power Rd", "Val Vista Dr", "Lindsay Rd", "Cooper Rd", "Greenfield Rd", "Recker Rd",
    "Ellsworth Rd", "McKellips Rd", "Brown Rd", "University Dr", "Rural Rd", "McClintock Dr",
    "Priest Dr", "Kyrene Rd", "Hayden Rd", "Shea Blvd", "Cave Creek Rd", "Tatum Blvd",
    "Lincoln Dr", "Jomax Rd", "Dynamite Blvd", "Litchfield Rd", "Dysart Rd", "El Mirage Rd",
    "Reems Rd", "Bullard Ave", "Cotton Ln", "Waddell Rd", "Orangewood Ave", "Maryland Ave",
    "Missouri Ave", "Montebello Ave", "Myrtle Ave", "Butler Dr", "Hatcher Rd", "Sweetwater Ave",
    "Sunnyslope Ln", "Mescal St", "Evans Rd", "Pershing Ave", "Larkspur Dr", "Wethersfield Rd",
    "Cortez St", "Dahlia Dr", "Mission Ln", "Gelding Dr", "Kings Ave", "Poinsettia Dr",
    "Grovers Ave", "Aire Libre Ave", "Wahalla Ln", "Angela Dr", "Topaz Dr", "Townley Ave",
    "Carol Ave", "Vista Ave", "Cinnabar Ave", "Citrus Way", "Mulberry Dr", "Hazelwood St",
    "Whitton Ave", "Campbell Ave", "Glenrosa Ave", "Highland Ave", "Colter St", "Pierson St",
    "Earll Dr", "Flower St", "Turney Ave", "Sheridan St", "Palm Ln", "Monte Vista Rd",
    "Almeria Rd", "Granada Rd", "Lewis Ave", "Culver St", "Moreland St", "Willetta St",
    "Hearn Rd", "Sharon Dr", "Surrey Ave", "Aster Dr", "Laurel Ln", "Joan De Arc Ave",
    "Wood Dr", "Nisbet Rd", "Kelton Ln", "Voltaire Ave", "Onyx Ave", "Lupine Ave", "Cannon Dr",
    "Mesquite St", "Juniper Ave", "Agave Rd",
)


def _suffix_clash(a: str, b: str) -> bool:
    """Whether one street name is the other's last words ("Bell Rd" and "Old Bell Rd")."""
    wa, wb = a.lower().split(), b.lower().split()
    short, long_ = (wa, wb) if len(wa) <= len(wb) else (wb, wa)
    return long_[len(long_) - len(short):] == short


assert len(set(EXTRA_STREET_NAMES)) == len(EXTRA_STREET_NAMES)
assert not any(_suffix_clash(a, b) for a in EXTRA_STREET_NAMES
               for b in (*STREET_NAMES, *UNKNOWN_STREETS, "Davis Rd"))

# Values the tests use as "certainly unknown": never handed out to an extra property.
_RESERVED_INTS = {12345678, 99999999, 1234567}
_RESERVED_APNS = {"999-99-999", "000-00-000"}
# Neighbour parcels sit at these house-number offsets (as in the sample catalog).
NEIGHBOUR_OFFSETS = (-4, 8)
# Variant checks in the order that rejects a bad candidate soonest (Redfin's crop fails most).
_CHECK_ORDER = (("redfin", "mbphotov3"), *[k for k in CHECKED_VARIANTS
                                           if k != ("redfin", "mbphotov3")])
# Sources whose crops almost never keep their variants near-duplicates (tiny repeating
# texture): skipped to keep generation cheap.
_POOL_SOURCES = tuple(s for s in imaging.SOURCES if s != "brick.png")


def check_counts(extra_properties: object, extra_photos: object) -> tuple[int, int]:
    """Validate N and K; raises ValueError naming the problem."""
    for name, value, hi in (("extra_properties", extra_properties, MAX_EXTRA_PROPERTIES),
                            ("extra_photos", extra_photos, MAX_EXTRA_PHOTOS)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= hi:
            raise ValueError(f"{name} must be an integer in [0, {hi}], got {value!r}")
    n, k = int(extra_properties), int(extra_photos)  # type: ignore[call-overload]
    if n * k > MAX_EXTRA_PHOTOS_TOTAL:
        raise ValueError(f"extra_properties x extra_photos must be at most "
                         f"{MAX_EXTRA_PHOTOS_TOTAL}, got {n} x {k} = {n * k}")
    return n, k


# -- the photo pool ----------------------------------------------------------------------------
class _Bank:
    """Accepted hashes in growable numpy arrays (canonical photos; every checked variant)."""

    def __init__(self) -> None:
        self.ph = np.zeros(1024, dtype=np.uint64)
        self.dh = np.zeros(1024, dtype=np.uint64)
        self.n = 0
        self.vph = np.zeros(4096, dtype=np.uint64)
        self.vdh = np.zeros(4096, dtype=np.uint64)
        self.vn = 0

    def add(self, hs: list[tuple[int, int]]) -> None:
        if self.n + 1 > len(self.ph):
            self.ph = np.resize(self.ph, 2 * len(self.ph))
            self.dh = np.resize(self.dh, 2 * len(self.dh))
        self.ph[self.n], self.dh[self.n] = hs[0]
        self.n += 1
        while self.vn + len(hs) > len(self.vph):
            self.vph = np.resize(self.vph, 2 * len(self.vph))
            self.vdh = np.resize(self.vdh, 2 * len(self.vdh))
        for p, d in hs:
            self.vph[self.vn], self.vdh[self.vn] = p, d
            self.vn += 1

    def canonical_clear(self, h: tuple[int, int]) -> bool:
        """No accepted photo within both ``DISTINCT_MIN`` distances of ``h``."""
        dp = np.bitwise_count(self.ph[:self.n] ^ np.uint64(h[0]))
        dd = np.bitwise_count(self.dh[:self.n] ^ np.uint64(h[1]))
        return not bool(np.any((dp <= DISTINCT_MIN[0]) & (dd <= DISTINCT_MIN[1])))

    def variant_clear(self, h: tuple[int, int]) -> bool:
        """No accepted photo's variant within both ``VARIANT_NEAR`` distances of ``h``."""
        dp = np.bitwise_count(self.vph[:self.vn] ^ np.uint64(h[0]))
        dd = np.bitwise_count(self.vdh[:self.vn] ^ np.uint64(h[1]))
        return not bool(np.any((dp <= VARIANT_NEAR[0]) & (dd <= VARIANT_NEAR[1])))


def candidate(seed: int, i: int) -> Recipe | None:
    """Pool candidate ``i`` of ``seed`` (its own random stream), or None if its crop would
    leave the source."""
    rng = random.Random(f"phx-sim-extra-photo-{seed}-{i}")
    src = rng.choice(_POOL_SOURCES)
    sw, sh = imaging.load_source(src).size
    width = rng.uniform(0.3, 0.7)
    h_frac = (width * sw / imaging.ASPECT) / sh
    if h_frac > 0.98:
        width *= 0.98 / h_frac
        h_frac = 0.98
    recipe = Recipe(
        src, round(rng.uniform(0, 1 - width), 4), round(rng.uniform(0, 1 - h_frac), 4),
        round(width, 4), rng.random() < 0.5,
        tuple(round(rng.uniform(0.82, 1.15), 3) for _ in range(3)),  # type: ignore[arg-type]
        tuple(round(rng.uniform(-12, 12), 1) for _ in range(3)),  # type: ignore[arg-type]
    )
    if not imaging.fits(recipe.source, recipe.left, recipe.top, recipe.width):
        return None
    return recipe


def _hex(h: tuple[int, int]) -> list[str]:
    return [f"{h[0]:016x}", f"{h[1]:016x}"]


def _unhex(pair: list[str]) -> tuple[int, int]:
    return int(pair[0], 16), int(pair[1], 16)


class _Pool:
    """The seed's validated extra photos, in acceptance order, grown on demand."""

    def __init__(self, seed: int, path: Path, sample_photos: list[dict[str, Any]]) -> None:
        self.seed = seed
        self.path = path
        self.lock = threading.Lock()
        self.bank = _Bank()
        self.entries: list[dict[str, Any]] = []  # {"recipe": [...], "hashes": [[ph, dh] x5]}
        self.cursor = 0
        self.sample: list[list[list[str]]] = []
        data = self._read()
        if data is None:
            for ph in sample_photos:  # the sample's variant hashes: computed once per seed
                hs = _check_variants(Recipe.from_json(ph["recipe"]))
                self.sample.append([_hex(h) for h in hs] if hs else [ph["hashes"]])
        else:
            self.sample, self.entries, self.cursor = (data["sample"], data["entries"],
                                                      data["cursor"])
        for hs in self.sample:
            self.bank.add([_unhex(h) for h in hs])
        for entry in self.entries:
            self.bank.add([_unhex(h) for h in entry["hashes"]])

    def _read(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text())
            ok = (data.get("version") == POOL_VERSION and data.get("seed") == self.seed
                  and data.get("catalog_version") == CATALOG_VERSION
                  and isinstance(data.get("entries"), list) and isinstance(data["cursor"], int)
                  and isinstance(data.get("sample"), list))
            return data if ok else None
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            return None

    def _check(self, recipe: Recipe) -> list[tuple[int, int]] | None:
        """The sample's rules, cheapest rejection first: every checked variant within
        ``VARIANT_MAX`` of the canonical render; no variant of it within both
        ``VARIANT_NEAR`` distances of any accepted photo's variant; and no accepted photo
        within both ``DISTINCT_MIN`` distances of it. The last is the one difference: the
        sample demands *each* distance beyond ``DISTINCT_MIN``, which rejects ever more
        candidates as the catalog grows into thousands; being beyond on one hash is what
        "not a near-duplicate" (both within the thresholds) needs, with the same margins."""
        small = imaging.render_recipe(recipe, CHECK_SIZE)
        h = imaging.hashes(small)
        if not self.bank.canonical_clear(h) or not self.bank.variant_clear(h):
            return None
        got: dict[tuple[str, str], tuple[int, int]] = {}
        for key in _CHECK_ORDER:
            hv = imaging.hashes(imaging.make_variant(small, VARIANTS[key], CHECK_SCALE))
            if (imaging.distance(h[0], hv[0]) > VARIANT_MAX[0]
                    or imaging.distance(h[1], hv[1]) > VARIANT_MAX[1]
                    or not self.bank.variant_clear(hv)):
                return None
            got[key] = hv
        return [h, *(got[k] for k in CHECKED_VARIANTS)]

    def _save(self) -> None:
        atomic_write(self.path, json.dumps({
            "version": POOL_VERSION, "seed": self.seed, "catalog_version": CATALOG_VERSION,
            "cursor": self.cursor, "sample": self.sample, "entries": self.entries}).encode())

    def ensure(self, count: int) -> list[dict[str, Any]]:
        """The first ``count`` entries, generating (and caching) any missing ones."""
        with self.lock:
            grew = len(self.entries) < count
            while len(self.entries) < count:
                if self.entries and len(self.entries) % 1000 == 0:
                    self._save()  # a checkpoint: an interrupted build resumes from here
                for _ in range(MAX_CONSECUTIVE_REJECTS):
                    i, self.cursor = self.cursor, self.cursor + 1
                    recipe = candidate(self.seed, i)
                    hs = self._check(recipe) if recipe is not None else None
                    if hs is not None:
                        self.bank.add(hs)
                        self.entries.append({"recipe": recipe.to_json(),  # type: ignore[union-attr]
                                             "hashes": [_hex(x) for x in hs]})
                        break
                else:
                    raise CatalogError(f"no distinct extra photo in {MAX_CONSECUTIVE_REJECTS}"
                                       f" candidates after {len(self.entries)} photos")
            if grew or not self.path.exists():
                self._save()
            return self.entries[:count]


_POOLS: dict[tuple[int, str], _Pool] = {}
_POOLS_LOCK = threading.Lock()


def pool_entries(seed: int, folder: Path, sample: dict[str, Any], count: int
                 ) -> list[dict[str, Any]]:
    """The first ``count`` validated extra photos of ``seed`` (cached under ``folder``)."""
    if count == 0:
        return []
    with _POOLS_LOCK:
        pool = _POOLS.get((seed, str(folder)))
        if pool is None:
            pool = _Pool(seed, folder / f"extra-pool-v{POOL_VERSION}.json", sample["photos"])
            _POOLS[(seed, str(folder))] = pool
    return pool.ensure(count)


# -- the properties ------------------------------------------------------------------------------
def _street_key(street: str) -> tuple[str, int]:
    number, rest = street.split(" ", 1)
    return rest, int(number)


def build(seed: int, sample: dict[str, Any], pool: list[dict[str, Any]], n: int, k: int
          ) -> dict[str, Any]:
    """N extra properties of K photos each (``pool`` holds at least N x K entries), as data
    in the sample catalog's format: properties, photos, carousels, neighbours."""
    rng = random.Random(f"phx-sim-extra-properties-{seed}")
    cities = list(CITIES)
    # What is taken: every address (street line, any city), id and APN of the sample catalog.
    taken_numbers: dict[str, set[int]] = {}
    for item in (*sample["properties"], *sample["neighbours"], *sample["unknown"]):
        rest, number = _street_key(item["street"])
        taken_numbers.setdefault(rest, set()).add(number)
    used_ints = set(_RESERVED_INTS)
    used_apns = set(_RESERVED_APNS)
    for p in sample["properties"]:
        ids = p["ids"]
        used_ints |= {int(ids[f]) for f in ("zpid", "redfin_property_id", "redfin_listing_id",
                                            "mls_number") if ids[f] is not None}
        used_apns.add(ids["apn"])
    used_apns |= {nb["apn"] for nb in sample["neighbours"]}
    used_redfin_photo = {ph["redfin_photo_id"] for ph in sample["photos"]}

    def unique_int(lo: int, hi: int) -> int:
        while True:
            value = rng.randint(lo, hi)
            if value not in used_ints:
                used_ints.add(value)
                return value

    def unique_apn(lo: int, hi: int) -> str:
        while True:
            apn = f"{rng.randint(lo, hi)}-{rng.randint(10, 99)}-{rng.randint(100, 999)}"
            if apn not in used_apns:
                used_apns.add(apn)
                return apn

    def street() -> str:
        while True:
            rest = f"{rng.choice('NSEW')} {rng.choice(EXTRA_STREET_NAMES)}"
            number = rng.randrange(1200, 21000, 2)
            mine = {number, *(number + d for d in NEIGHBOUR_OFFSETS)}
            numbers = taken_numbers.setdefault(rest, set())
            if not mine & numbers:
                numbers |= mine
                return f"{number} {rest}"

    base_index = len(sample["properties"])
    base_photo = len(sample["photos"])
    props: list[dict[str, Any]] = []
    photos: list[dict[str, Any]] = []
    neighbours: list[dict[str, Any]] = []
    carousels: dict[str, dict[str, list[str]]] = {s: {} for s in sample["carousels"]}
    # Carousel candidates: listed properties with a photo on that site (sample ones first).
    shown = {s: [p["key"] for p in sample["properties"] if s in p["on_sites"]]
             for s in carousels}
    for j in range(n):
        key = f"p{base_index + j + 1:02d}"
        city = rng.choice(cities)
        zip_code = rng.choice(CITIES[city][0])
        line = street()
        facts = _facts(rng, city)
        r = rng.random()
        missing = None if r < 0.7 else PHOTO_SITES[int((r - 0.7) / 0.1) % 3]
        listed = [s for s in PHOTO_SITES if s != missing]
        ids: dict[str, Any] = {
            "zpid": str(unique_int(10_000_000, 99_999_999)),
            "redfin_property_id": unique_int(10_000_000, 99_999_999),
            "redfin_listing_id": unique_int(100_000_000, 999_999_999),
            "mls_number": str(unique_int(6_000_000, 6_999_999)),
            "apn": unique_apn(100, 399),
        }
        if "zillow" not in listed:
            ids["zpid"] = None
        if "redfin" not in listed:
            ids["redfin_property_id"] = ids["redfin_listing_id"] = None
        if "phoenixmls" not in listed:
            ids["mls_number"] = None

        # Subjects: the front first, then a shuffled mix of rooms; listing order as the sample.
        core = list(CORE_SUBJECTS) + (["pool", "pool_equip"] if facts["pool"] else [])
        rng.shuffle(core)
        extras = list(EXTRA_SUBJECTS)
        rng.shuffle(extras)
        subjects = ["front", *(core + extras)[: max(0, k - 1)]]
        while len(subjects) < k:
            subjects.append(rng.choice(CORE_SUBJECTS))
        subjects = sorted(subjects[:k], key=ORDER.index)
        photo_ids = []
        for pos, subject in enumerate(subjects):
            m = j * k + pos
            pid = f"ph{base_photo + m + 1:04d}"
            sites = list(listed)
            if pos > 0 and len(sites) == 3 and rng.random() >= 0.55:
                sites = sorted(rng.sample(sites, 2), key=PHOTO_SITES.index)
            digest = hashlib.sha256(f"{seed}:{pid}".encode()).hexdigest()
            redfin_photo_id = int(digest[:10], 16) % 9_000_000_000 + 1_000_000_000
            while redfin_photo_id in used_redfin_photo:  # next free one, wrapping around
                redfin_photo_id = (redfin_photo_id - 999_999_999) % 9_000_000_000 + 1_000_000_000
            used_redfin_photo.add(redfin_photo_id)
            pmls_key = str(int(digest[32:], 16))[-26:].rjust(26, "1")
            photos.append({
                "id": pid, "recipe": pool[m]["recipe"], "subject": subject,
                "caption": rng.choice(SUBJECT_CAPTIONS[subject]), "properties": [key],
                "hashes": pool[m]["hashes"][0], "sites": sites, "zillow_hex": digest[:32],
                "pmls_key": pmls_key, "pmls_dir": pmls_key[-2:],
                "redfin_photo_id": redfin_photo_id,
            })
            photo_ids.append(pid)
        if "redfin" in listed:
            pos = 0
            for ph in photos[len(photos) - len(photo_ids):]:
                if "redfin" in ph["sites"]:
                    ph["redfin_owner"] = [key, ids["redfin_listing_id"], pos, rng.choice((0, 1))]
                    pos += 1
        for site in carousels:
            if site in listed:
                carousels[site][key] = rng.sample(shown[site], 3)
                if k:
                    shown[site].append(key)
        rest = line.split(" ", 1)[1]
        number = int(line.split(" ", 1)[0])
        for delta in NEIGHBOUR_OFFSETS:
            neighbours.append({
                "street": f"{number + delta} {rest}", "city": city, "state": "AZ",
                "zip_code": zip_code, "apn": unique_apn(400, 599), "facts": _facts(rng, city),
            })
        props.append({"key": key, "street": line, "city": city, "state": "AZ",
                      "zip_code": zip_code, "ids": ids, "facts": facts,
                      "on_sites": [*listed, "assessor"], "photo_ids": photo_ids})
    return {"properties": props, "photos": photos, "carousels": carousels,
            "neighbours": neighbours}


def extend(seed: int, folder: Path, sample: dict[str, Any], n: int, k: int,
           photos: bool = True) -> dict[str, Any]:
    """The sample catalog's data with N extra properties of K photos appended (a new dict;
    ``sample`` is not modified). ``photos=False`` skips the photo pool (the photos' recipes
    and hashes are then placeholders): enough for the CSV, which only needs the properties,
    and identical to the full build in everything else."""
    n, k = check_counts(n, k)
    pool = (pool_entries(seed, folder, sample, n * k) if photos
            else [{"recipe": None, "hashes": [["0" * 16] * 2]}] * (n * k))
    extra = build(seed, sample, pool, n, k)
    data = dict(sample)
    data["properties"] = [*sample["properties"], *extra["properties"]]
    data["photos"] = [*sample["photos"], *extra["photos"]]
    data["neighbours"] = [*sample["neighbours"], *extra["neighbours"]]
    data["carousels"] = {s: {**sample["carousels"][s], **extra["carousels"].get(s, {})}
                         for s in sample["carousels"]}
    data["extra"] = {"properties": n, "photos": k,
                     "sample_properties": len(sample["properties"])}
    return data
