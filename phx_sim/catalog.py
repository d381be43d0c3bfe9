"""The catalog: 32 deterministic properties, their ids, facts and photo recipes, and the truth.

Why generate rather than hand-write: the catalog must be large (>= 600 photos) and *valid by
construction*: every photo's site variants are near-duplicates of it, and no two distinct
photos are. That is only checkable by hashing, so the generator renders each candidate small,
hashes it and its tricky variants, and rejects what would break the guarantees. The result
depends only on the seed and is cached as JSON under ``cache_dir/seed-N/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from phx_sim import imaging
from phx_sim.imaging import (
    BEST_KIND,
    CHECKED_VARIANTS,
    VARIANTS,
    ZILLOW_WIDTHS,
    Recipe,
)

CATALOG_VERSION = 4
PHOTO_SITES: tuple[str, ...] = ("zillow", "redfin", "phoenixmls")
ALL_SITES: tuple[str, ...] = (*PHOTO_SITES, "assessor")
THRESHOLDS = {"phash": 8, "dhash": 10}

# Generation margins: checks run on small renders, the served bytes are full-size re-encodes,
# so keep a safety margin on both sides of the dedup thresholds.
VARIANT_MAX = (6, 8)          # a variant must be at most this far from its canonical photo
DISTINCT_MIN = (13, 15)       # distinct photos: pHash AND dHash distance must exceed these
HARD_NEG_MIN = (11, 13)       # hard negatives may be a bit closer, still beyond both thresholds
VARIANT_NEAR = (10, 12)       # two photos' variants never both this close (thresholds + 2)
CHECK_SIZE = (240, 160)
CHECK_SCALE = CHECK_SIZE[0] / imaging.CANON_W

CITIES: dict[str, tuple[tuple[str, ...], tuple[str, str, str]]] = {
    "Phoenix": (("85016", "85018", "85020", "85032", "85044"),
                ("Madison Rose Lane Elementary", "Madison Meadows Middle", "Camelback High")),
    "Glendale": (("85306", "85308", "85304"),
                 ("Desert Palms Elementary", "Cholla Middle", "Ironwood High")),
    "Scottsdale": (("85251", "85254", "85260"),
                   ("Hohokam Elementary", "Mohave Middle", "Saguaro High")),
    "Tempe": (("85281", "85283"), ("Kyrene de la Mirada", "Fees College Prep", "McClintock High")),
    "Mesa": (("85201", "85204", "85213"),
             ("Lincoln Elementary", "Kino Junior High", "Westwood High")),
    "Chandler": (("85224", "85226", "85249"),
                 ("Frye Elementary", "Bogle Junior High", "Hamilton High")),
    "Gilbert": (("85233", "85234", "85296"),
                ("Islands Elementary", "Mesquite Junior High", "Highland High")),
    "Peoria": (("85345", "85381", "85382"),
               ("Oakwood Elementary", "Sunrise Mountain Middle", "Centennial High")),
    "Surprise": (("85374", "85379", "85388"),
                 ("Sonoran Heights Elementary", "Paradise Honors", "Willow Canyon High")),
}
STREET_NAMES = (
    "Camelback Rd", "Thunderbird Rd", "Cactus Rd", "Bell Rd", "Greenway Rd", "Indian School Rd",
    "Osborn Rd", "Baseline Rd", "Guadalupe Rd", "Elliot Rd", "Warner Rd", "Ray Rd", "Chandler Blvd",
    "Ocotillo Rd", "Pinnacle Peak Rd", "Happy Valley Rd", "Peoria Ave", "Olive Ave",
    "Northern Ave", "Glendale Ave", "Sahuaro Dr", "Desert Cove Ave", "Palo Verde Dr",
    "Mariposa St", "Coronado Rd", "Encanto Blvd", "Sunnyside Ave", "Mountain View Rd",
    "Cholla St", "Saguaro Blvd", "Acoma Dr", "Paradise Ln", "Windrose Dr", "Yucca St",
)
UNKNOWN_STREETS = ("Marigold Ln", "Quail Run Dr", "Tumbleweed Ct")

SUBJECT_CAPTIONS: dict[str, tuple[str, ...]] = {
    "front": ("Front exterior with desert landscaping", "Welcoming curb appeal and tile roof",
              "Stucco facade with mature palo verde", "Street view of the home at dusk"),
    "rear": ("Rear exterior with covered patio", "Back of the home from the yard"),
    "pool": ("Sparkling private pool", "Pebble-tec pool with water feature",
             "Pool and spa with mountain views"),
    "garage": ("Two-car garage with epoxy floor", "Oversized garage with built-in cabinets"),
    "yard": ("Low-maintenance backyard with artificial turf",
             "Spacious backyard with citrus trees"),
    "aerial": ("Aerial view of the lot and neighborhood", "Drone view toward the mountains"),
    "driveway": ("Extended driveway with RV gate", "Paver driveway"),
    "patio": ("Covered patio with ceiling fans", "Extended patio perfect for entertaining"),
    "courtyard": ("Gated front courtyard", "Private courtyard with fountain"),
    "kitchen": ("Remodeled kitchen with quartz counters", "Chef's kitchen with large island",
                "Kitchen with stainless steel appliances", "Bright kitchen with breakfast bar"),
    "master": ("Primary bedroom with vaulted ceiling", "Spacious primary suite",
               "Primary bedroom with backyard access"),
    "master_bath": ("Primary bathroom with dual sinks", "Primary bath with walk-in shower",
                    "Spa-like primary bath with soaking tub"),
    "bedroom": ("Secondary bedroom with ceiling fan", "Guest bedroom", "Bedroom with large window"),
    "bathroom": ("Guest bathroom with tub/shower combo", "Hall bathroom", "Updated full bath"),
    "living": ("Open living room with fireplace", "Great room with high ceilings",
               "Living room filled with natural light"),
    "dining": ("Formal dining area", "Dining area off the kitchen"),
    "laundry": ("Laundry room with utility sink", "Inside laundry with cabinets"),
    "office": ("Home office with built-in desk", "Den/office with French doors"),
    "entry": ("Entry with tile flooring", "Grand entryway"),
    "hallway": ("Hallway to bedrooms", "Wide hallway with art niches"),
    "closet": ("Walk-in closet", "Primary walk-in closet with shelving"),
    "stairs": ("Staircase with iron railing", "Stairs to the loft"),
    "bonus": ("Bonus room / loft", "Flex space ideal for a game room"),
    "hvac": ("Newer AC unit (2021)", "HVAC system"),
    "water_heater": ("Water heater in garage", "Tankless water heater"),
    "roof": ("Tile roof in good condition", "Roof with new underlayment"),
    "fireplace": ("Gas fireplace in family room", "Stacked stone fireplace"),
    "solar": ("Owned solar panels", "Solar array on the roof"),
    "pool_equip": ("Pool equipment with variable-speed pump", "Pool pump and filter"),
    "ceiling_fan": ("Ceiling fans throughout", "Great room ceiling fan"),
}
SHARED_CAPTIONS = (("pool", "Community pool"), ("courtyard", "Community clubhouse courtyard"))
CORE_SUBJECTS = ("living", "kitchen", "dining", "master", "master_bath", "bedroom", "bedroom",
                 "bathroom", "rear", "yard")
EXTRA_SUBJECTS = ("garage", "aerial", "driveway", "patio", "courtyard", "laundry", "office",
                  "entry", "hallway", "closet", "stairs", "bonus", "hvac", "water_heater",
                  "roof", "fireplace", "solar", "ceiling_fan", "bedroom", "bathroom", "kitchen",
                  "living")
# Listing order: front first, then indoors, then the rest outdoors, then systems/features.
ORDER = ("front", "entry", "living", "dining", "kitchen", "fireplace", "ceiling_fan", "office",
         "master", "master_bath", "closet", "bedroom", "bathroom", "hallway", "stairs", "bonus",
         "laundry", "rear", "patio", "courtyard", "pool", "yard", "garage", "driveway", "aerial",
         "pool_equip", "hvac", "water_heater", "roof", "solar")


class CatalogError(RuntimeError):
    """The generator could not satisfy its constraints (should not happen for sane seeds)."""


def norm_words(text: str) -> list[str]:
    """Lower-case alphanumeric words: the one normalisation every site uses for matching."""
    return re.findall(r"[a-z0-9]+", str(text).lower())


def slug_of(street: str, city: str, state: str, zip_code: str) -> str:
    """``4732-W-Davis-Rd-Glendale-AZ-85306`` (Zillow's form; PhoenixMLS lower-cases it)."""
    return "-".join(re.findall(r"[A-Za-z0-9]+", f"{street} {city} {state} {zip_code}"))


@dataclass
class Property:
    key: str
    street: str
    city: str
    state: str
    zip_code: str
    ids: dict[str, Any]
    on_sites: list[str]
    facts: dict[str, Any]
    photo_ids: list[str]

    @property
    def full_address(self) -> str:
        return f"{self.street}, {self.city}, {self.state} {self.zip_code}"

    @property
    def slug(self) -> str:
        return slug_of(self.street, self.city, self.state, self.zip_code)

    def site_photos(self, catalog: Catalog, site: str) -> list[Photo]:
        """This property's photos as ``site`` lists them, in listing order."""
        return [catalog.photos[p] for p in self.photo_ids if site in catalog.photos[p].sites]


@dataclass
class Photo:
    id: str
    recipe: Recipe
    subject: str
    caption: str
    properties: list[str]
    sites: list[str]
    hashes: tuple[int, int]
    paths: dict[str, dict[str, str]] = field(default_factory=dict)  # site -> variant key -> path


class _HashBank:
    """Accepted photos' hashes in numpy arrays so a candidate is checked against all at once.

    Two checks: canonical against canonical (both distances beyond ``DISTINCT_MIN``, the
    spec's rule with a margin) and every checked variant against every accepted variant
    (never a near-duplicate, with a margin): the engine dedups served variants, not canonicals.
    """

    def __init__(self) -> None:
        self.ph = np.zeros(0, dtype=np.uint64)
        self.dh = np.zeros(0, dtype=np.uint64)
        self.vph = np.zeros(0, dtype=np.uint64)
        self.vdh = np.zeros(0, dtype=np.uint64)

    def clear_of(self, hs: list[tuple[int, int]], mins: tuple[int, int]) -> bool:
        if not len(self.ph):
            return True
        h = hs[0]
        dp = np.bitwise_count(self.ph ^ np.uint64(h[0]))
        dd = np.bitwise_count(self.dh ^ np.uint64(h[1]))
        if not bool(np.all((dp > mins[0]) & (dd > mins[1]))):
            return False
        for vp, vd in hs:
            dp = np.bitwise_count(self.vph ^ np.uint64(vp))
            dd = np.bitwise_count(self.vdh ^ np.uint64(vd))
            if bool(np.any((dp <= VARIANT_NEAR[0]) & (dd <= VARIANT_NEAR[1]))):
                return False
        return True

    def add(self, hs: list[tuple[int, int]]) -> None:
        self.ph = np.append(self.ph, np.uint64(hs[0][0]))
        self.dh = np.append(self.dh, np.uint64(hs[0][1]))
        self.vph = np.append(self.vph, np.array([h[0] for h in hs], dtype=np.uint64))
        self.vdh = np.append(self.vdh, np.array([h[1] for h in hs], dtype=np.uint64))


def _check_variants(recipe: Recipe) -> list[tuple[int, int]] | None:
    """Hashes of the small canonical render and its checked variants, or None if a variant
    strays too far from the canonical photo."""
    small = imaging.render_recipe(recipe, CHECK_SIZE)
    h = imaging.hashes(small)
    out = [h]
    for key in CHECKED_VARIANTS:
        hv = imaging.hashes(imaging.make_variant(small, VARIANTS[key], CHECK_SCALE))
        if (imaging.distance(h[0], hv[0]) > VARIANT_MAX[0]
                or imaging.distance(h[1], hv[1]) > VARIANT_MAX[1]):
            return None
        out.append(hv)
    return out


class _Generator:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.bank = _HashBank()
        self.tried = 0
        self.sources = [s for s in imaging.SOURCES]

    def _random_recipe(self, max_width: float = 0.7) -> Recipe:
        rng = self.rng
        src = rng.choice(self.sources)
        sw, sh = imaging.load_source(src).size
        width = rng.uniform(0.3, max_width)
        h_frac = (width * sw / imaging.ASPECT) / sh
        if h_frac > 0.98:
            width *= 0.98 / h_frac
            h_frac = 0.98
        return Recipe(
            src, round(rng.uniform(0, 1 - width), 4), round(rng.uniform(0, 1 - h_frac), 4),
            round(width, 4), rng.random() < 0.5,
            tuple(round(rng.uniform(0.82, 1.15), 3) for _ in range(3)),  # type: ignore[arg-type]
            tuple(round(rng.uniform(-12, 12), 1) for _ in range(3)),  # type: ignore[arg-type]
        )

    def photo(self) -> tuple[Recipe, tuple[int, int]]:
        for _ in range(400):
            self.tried += 1
            recipe = self._random_recipe()
            hs = _check_variants(recipe)
            if hs is not None and self.bank.clear_of(hs, DISTINCT_MIN):
                self.bank.add(hs)
                return recipe, hs[0]
        raise CatalogError("could not find a distinct photo in 400 tries")

    def hard_negative_pair(self) -> list[tuple[Recipe, tuple[int, int]]]:
        """Two overlapping views of one scene: the second crop shifted by 30-45 %."""
        rng = self.rng
        for _ in range(400):
            self.tried += 1
            a = self._random_recipe(max_width=0.55)
            has = _check_variants(a)
            if has is None or not self.bank.clear_of(has, DISTINCT_MIN):
                continue
            sw, sh = imaging.load_source(a.source).size
            crop_h_frac = (a.width * sw / imaging.ASPECT) / sh
            for _ in range(8):
                self.tried += 1
                shift = rng.uniform(0.30, 0.45)
                if rng.random() < 0.6:
                    dx = shift * a.width * rng.choice((-1, 1))
                    left, top = a.left + dx, a.top
                else:
                    dy = shift * crop_h_frac * rng.choice((-1, 1))
                    left, top = a.left, a.top + dy
                if not imaging.fits(a.source, left, top, a.width):
                    continue
                b = Recipe(a.source, round(left, 4), round(top, 4), a.width, a.flip, a.color,
                           a.offset)
                hbs = _check_variants(b)
                if hbs is None or not self.bank.clear_of(hbs, DISTINCT_MIN):
                    continue
                pair_bank = _HashBank()
                pair_bank.add(has)
                if not pair_bank.clear_of(hbs, HARD_NEG_MIN):
                    continue
                self.bank.add(has)
                self.bank.add(hbs)
                return [(a, has[0]), (b, hbs[0])]
        raise CatalogError("could not find a hard-negative pair in 400 tries")


def _street(rng: random.Random, used: set[str], names: tuple[str, ...]) -> str:
    while True:
        name = rng.choice(names)
        direction = rng.choice("NSEW")
        number = rng.randrange(1200, 21000, 2)
        street = f"{number} {direction} {name}"
        key = f"{direction} {name}"
        if key not in used:
            used.add(key)
            return street


def _facts(rng: random.Random, city: str) -> dict[str, Any]:
    beds = rng.randint(2, 5)
    baths = rng.choice((1.5, 2.0, 2.0, 2.5, 3.0, 3.5)) if beds < 4 else rng.choice(
        (2.5, 3.0, 3.5, 4.0))
    sqft = rng.randint(1050, 1500) + (beds - 2) * rng.randint(300, 550)
    price = round((sqft * rng.uniform(230, 420)) / 5000) * 5000
    if rng.random() < 0.4:
        price -= 100
    if rng.random() < 0.3:
        acres = round(rng.uniform(0.22, 1.25), 2)
        lot_sqft = round(acres * 43560)
        lot_display = f"{acres:.2f} acres"
    else:
        acres = None
        lot_sqft = rng.randint(4200, 11800)
        lot_display = f"{lot_sqft:,} sqft"
    hoa_monthly = 0 if rng.random() < 0.5 else rng.choice((45, 75, 95, 150, 185, 220))
    pool = rng.random() < 0.5
    schools = CITIES[city][1]
    year = rng.randint(1962, 2021)
    garage = rng.choice((1, 2, 2, 2, 3))
    desc = (f"Beautiful {beds} bed, {baths:g} bath home in {city} with {sqft:,} sq ft of living "
            f"space on a {lot_display} lot. Built in {year}, {garage}-car garage"
            f"{', private pool' if pool else ''}"
            f"{'' if hoa_monthly == 0 else f', HOA ${hoa_monthly}/month'}.")
    return {
        "price": price, "beds": beds, "baths": baths, "sqft": sqft,
        "lot_sqft": lot_sqft, "lot_acres": acres, "lot_display": lot_display,
        "garage_spaces": garage, "hoa_monthly": hoa_monthly,
        "hoa": "No Fees" if hoa_monthly == 0 else f"${hoa_monthly}/month",
        "pool": pool, "sewer": "Sewer - Public" if rng.random() < 0.85 else "Septic",
        "year_built": year, "elementary_school": schools[0], "middle_school": schools[1],
        "high_school": schools[2], "description": desc,
    }


def _unique_int(rng: random.Random, lo: int, hi: int, used: set[int]) -> int:
    while True:
        value = rng.randint(lo, hi)
        if value not in used:
            used.add(value)
            return value


def generate(seed: int) -> dict[str, Any]:
    """Build the whole catalog for ``seed`` as plain JSON-able data."""
    rng = random.Random(f"phx-sim-catalog-{seed}")
    gen = _Generator(seed)
    used_streets: set[str] = {"W Davis Rd"}
    used_ints: set[int] = set()
    cities = list(CITIES)
    props: list[dict[str, Any]] = []
    for i in range(32):
        if i == 0:
            street, city, zip_code = "4732 W Davis Rd", "Glendale", "85306"
        else:
            city = cities[i % len(cities)]
            street = _street(rng, used_streets, STREET_NAMES)
            zip_code = rng.choice(CITIES[city][0])
        facts = _facts(rng, city)
        ids = {
            "zpid": str(_unique_int(rng, 10_000_000, 99_999_999, used_ints)),
            "redfin_property_id": _unique_int(rng, 10_000_000, 99_999_999, used_ints),
            "redfin_listing_id": _unique_int(rng, 100_000_000, 999_999_999, used_ints),
            "mls_number": "6937912" if i == 0 else str(
                _unique_int(rng, 6_500_000, 6_999_999, used_ints)),
            "apn": "207-22-123" if i == 0 else
            f"{rng.randint(100, 399)}-{rng.randint(10, 99)}-{rng.randint(100, 999)}",
        }
        props.append({"key": f"p{i + 1:02d}", "street": street, "city": city, "state": "AZ",
                      "zip_code": zip_code, "ids": ids, "facts": facts})

    # Presence: each photo site misses two properties, never the same one twice; the pairs
    # that share photos (and the first property) are on every site.
    shared_pairs = [(4, 5), (16, 17)]
    for a, b in shared_pairs:
        props[b]["city"] = props[a]["city"]
        props[b]["zip_code"] = props[a]["zip_code"]
        for p in (props[a], props[b]):
            if p["facts"]["hoa_monthly"] == 0:
                p["facts"]["hoa_monthly"] = 150
                p["facts"]["hoa"] = "$150/month"
    candidates = [i for i in range(1, 32) if i not in {4, 5, 16, 17}]
    missing = rng.sample(candidates, 6)
    absent = {"zillow": missing[0:2], "redfin": missing[2:4], "phoenixmls": missing[4:6]}
    for i, p in enumerate(props):
        p["on_sites"] = [s for s in PHOTO_SITES if i not in absent[s]] + ["assessor"]
        if "zillow" not in p["on_sites"]:
            p["ids"]["zpid"] = None
        if "redfin" not in p["on_sites"]:
            p["ids"]["redfin_property_id"] = p["ids"]["redfin_listing_id"] = None
        if "phoenixmls" not in p["on_sites"]:
            p["ids"]["mls_number"] = None

    counts = [rng.randint(18, 24) for _ in props]
    while sum(counts) < 630:
        j = rng.randrange(32)
        counts[j] = min(24, counts[j] + 1)

    photos: list[dict[str, Any]] = []

    def new_photo(recipe: Recipe, h: tuple[int, int], subject: str, owners: list[str],
                  caption: str | None = None) -> str:
        pid = f"ph{len(photos) + 1:04d}"
        photos.append({"id": pid, "recipe": recipe.to_json(), "subject": subject,
                       "caption": caption or rng.choice(SUBJECT_CAPTIONS[subject]),
                       "properties": owners, "hashes": [f"{h[0]:016x}", f"{h[1]:016x}"]})
        return pid

    hard_negatives: list[list[str]] = []
    photo_lists: list[list[str]] = []
    for i, p in enumerate(props):
        n = counts[i]
        subjects = list(CORE_SUBJECTS)
        if p["facts"]["pool"]:
            subjects += ["pool", "pool_equip"]
        extras = list(EXTRA_SUBJECTS)
        rng.shuffle(extras)
        while len(subjects) < n - 1:
            subjects.append(extras.pop() if extras else rng.choice(CORE_SUBJECTS))
        subjects = subjects[: n - 1]
        # Two hard-negative pairs: two views of the same room (same subject).
        hn_subjects = rng.sample([s for s in ("living", "kitchen", "master", "yard", "rear")
                                  if s in subjects], 2)
        ids: list[tuple[str, str]] = []
        recipe, h = gen.photo()
        ids.append(("front", new_photo(recipe, h, "front", [p["key"]])))
        remaining = list(subjects)
        for subject in hn_subjects:
            remaining.remove(subject)
            pair = gen.hard_negative_pair()
            captions = rng.sample(SUBJECT_CAPTIONS[subject], 2) if len(
                SUBJECT_CAPTIONS[subject]) > 1 else [SUBJECT_CAPTIONS[subject][0]] * 2
            pair_ids = [new_photo(r, hh, subject, [p["key"]], c)
                        for (r, hh), c in zip(pair, captions, strict=True)]
            hard_negatives.append(pair_ids)
            ids += [(subject, pid) for pid in pair_ids]
            # The pair fills two slots: drop a second one (the same subject if it repeats).
            if subject in remaining:
                remaining.remove(subject)
            else:
                remaining.pop()
        for subject in remaining:
            recipe, h = gen.photo()
            ids.append((subject, new_photo(recipe, h, subject, [p["key"]])))
        ids.sort(key=lambda t: ORDER.index(t[0]))
        photo_lists.append([pid for _, pid in ids])

    for (a, b), (subject, caption) in zip(shared_pairs, SHARED_CAPTIONS, strict=True):
        recipe, h = gen.photo()
        pid = new_photo(recipe, h, subject, [props[a]["key"], props[b]["key"]], caption)
        for j in (a, b):
            photo_lists[j].insert(len(photo_lists[j]) // 2 + 1, pid)
    for p, plist in zip(props, photo_lists, strict=True):
        p["photo_ids"] = plist

    # Which sites show each photo: two or three of the owners' common photo sites; every
    # property's first photo on all of them.
    by_id = {ph["id"]: ph for ph in photos}
    for ph in photos:
        common = [s for s in PHOTO_SITES
                  if all(s in props[int(k[1:]) - 1]["on_sites"] for k in ph["properties"])]
        first = any(props[int(k[1:]) - 1]["photo_ids"][0] == ph["id"] for k in ph["properties"])
        if len(common) == 3 and not first and rng.random() >= 0.55:
            common = sorted(rng.sample(common, 2), key=PHOTO_SITES.index)
        ph["sites"] = common
        if len(common) < 2:
            raise CatalogError(f"photo {ph['id']} would be on fewer than two sites")

    # CDN identities.
    for ph in photos:
        digest = hashlib.sha256(f"{seed}:{ph['id']}".encode()).hexdigest()
        ph["zillow_hex"] = digest[:32]
        ph["pmls_key"] = str(int(digest[32:], 16))[-26:].rjust(26, "1")
        ph["pmls_dir"] = ph["pmls_key"][-2:]
        ph["redfin_photo_id"] = int(digest[:10], 16) % 9_000_000_000 + 1_000_000_000
    for p in props:
        if "redfin" not in p["on_sites"]:
            continue
        pos = 0
        for pid in p["photo_ids"]:
            ph = by_id[pid]
            if "redfin" in ph["sites"] and "redfin_owner" not in ph:
                ph["redfin_owner"] = [p["key"], p["ids"]["redfin_listing_id"], pos,
                                      rng.choice((0, 1))]
            if "redfin" in ph["sites"]:
                pos += 1

    # Carousels: three other listed properties' first photos.
    carousels: dict[str, dict[str, list[str]]] = {"zillow": {}, "phoenixmls": {}}
    for site in carousels:
        listed = [p["key"] for p in props if site in p["on_sites"]]
        for key in listed:
            others = [k for k in listed if k != key]
            carousels[site][key] = rng.sample(others, 3)

    unknown = []
    used_unknown: set[str] = set()
    for i, name in enumerate(UNKNOWN_STREETS):
        city = ("Phoenix", "Mesa", "Surprise")[i]
        street = _street(rng, used_unknown, (name,))
        facts = _facts(rng, city)
        unknown.append({"street": street, "city": city, "state": "AZ",
                        "zip_code": rng.choice(CITIES[city][0]), "facts": facts})

    # Assessor neighbours: parcels next door that no listing site has, so a search by street
    # returns several results and adapters must match the exact address.
    neighbours = []
    for p in props:
        number, rest = p["street"].split(" ", 1)
        for delta in (-4, 8):
            neighbours.append({
                "street": f"{int(number) + delta} {rest}", "city": p["city"], "state": "AZ",
                "zip_code": p["zip_code"],
                "apn": f"{rng.randint(400, 599)}-{rng.randint(10, 99)}-{rng.randint(100, 999)}",
                "facts": _facts(rng, p["city"]),
            })

    return {"version": CATALOG_VERSION, "seed": seed, "properties": props, "photos": photos,
            "hard_negatives": hard_negatives, "carousels": carousels, "unknown": unknown,
            "neighbours": neighbours, "candidates_tried": gen.tried}


class Catalog:
    """The loaded catalog with the lookups the sites need (by zpid, by CDN path, ...)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.seed: int = data["seed"]
        self.properties: list[Property] = [
            Property(p["key"], p["street"], p["city"], p["state"], p["zip_code"], p["ids"],
                     p["on_sites"], p["facts"], p["photo_ids"]) for p in data["properties"]]
        self.by_key = {p.key: p for p in self.properties}
        self.position = {p.key: i for i, p in enumerate(self.properties)}
        extra = data.get("extra") or {}
        # The sample properties come first; generated ones (phx_sim.extra) follow them.
        self.sample_count: int = int(extra.get("sample_properties", len(self.properties)))
        self.extra_properties: int = int(extra.get("properties", 0))
        self.extra_photos: int = int(extra.get("photos", 0))
        self.photos: dict[str, Photo] = {}
        self.raw_photos = {ph["id"]: ph for ph in data["photos"]}
        for ph in data["photos"]:
            photo = Photo(ph["id"], Recipe.from_json(ph["recipe"]), ph["subject"], ph["caption"],
                          ph["properties"], ph["sites"],
                          (int(ph["hashes"][0], 16), int(ph["hashes"][1], 16)))
            photo.paths = self._paths(ph)
            self.photos[photo.id] = photo
        self.hard_negatives: list[list[str]] = data["hard_negatives"]
        self.carousels: dict[str, dict[str, list[str]]] = data["carousels"]
        self.unknown: list[dict[str, Any]] = data["unknown"]
        self.neighbours: list[dict[str, Any]] = data["neighbours"]
        # CDN path -> (photo id, variant key), one dict per photo site.
        self.cdn_index: dict[str, dict[str, tuple[str, str]]] = {s: {} for s in PHOTO_SITES}
        for photo in self.photos.values():
            for site, paths in photo.paths.items():
                for vkey, path in paths.items():
                    if path in self.cdn_index[site]:
                        raise CatalogError(f"two photos share the {site} path {path}")
                    self.cdn_index[site][path] = (photo.id, vkey)
        self.by_zpid = {p.ids["zpid"]: p for p in self.properties if p.ids["zpid"]}
        self.by_redfin = {p.ids["redfin_property_id"]: p for p in self.properties
                          if p.ids["redfin_property_id"]}
        self.by_mls = {p.ids["mls_number"]: p for p in self.properties if p.ids["mls_number"]}

    @staticmethod
    def _paths(ph: dict[str, Any]) -> dict[str, dict[str, str]]:
        paths: dict[str, dict[str, str]] = {}
        if "zillow" in ph["sites"]:
            paths["zillow"] = {}
            for w in ZILLOW_WIDTHS:
                for ext in ("jpg", "webp"):
                    paths["zillow"][f"cc_ft_{w}.{ext}"] = f"/fp/{ph['zillow_hex']}-cc_ft_{w}.{ext}"
        if "redfin" in ph["sites"]:
            _, listing, pos, ver = ph["redfin_owner"]
            name = f"{listing}_{ver}.jpg" if pos == 0 else f"{listing}_{pos}_{ver}.jpg"
            n, nnn = 134 + listing % 60, f"{listing % 1000:03d}"
            paths["redfin"] = {
                "bigphoto": f"/photo/{n}/bigphoto/{nnn}/{name}",
                "mbphotov3": f"/photo/{n}/mbphotov3/{nnn}/genMid.{name}",
                "islphoto": f"/photo/{n}/islphoto/{nnn}/genIslnoResize.{name}",
                "thumbnail": f"/thumbnail/{n}/{nnn}/{name}",
            }
        if "phoenixmls" in ph["sites"]:
            paths["phoenixmls"] = {k: f"/{ph['pmls_dir']}/{ph['pmls_key']}-{k}.jpg"
                                   for k in ("t", "m", "l", "o")}
        return paths

    def redfin_photo_id(self, photo_id: str) -> int:
        return int(self.raw_photos[photo_id]["redfin_photo_id"])

    def first_photo(self, prop: Property, site: str) -> Photo:
        return prop.site_photos(self, site)[0]

    def truth(self, urls: dict[str, str]) -> dict[str, Any]:
        """The ground truth as served at ``/_sim/truth``, with absolute URLs."""
        asset = {"zillow": urls["zillow_photos"], "redfin": urls["redfin_photos"],
                 "phoenixmls": urls["phoenixmls_photos"]}
        photos = []
        for photo in self.photos.values():
            variants = []
            for site, paths in photo.paths.items():
                for vkey, path in paths.items():
                    spec = VARIANTS[(site, vkey)]
                    variants.append({"site": site, "url": asset[site] + path,
                                     "width": spec.width, "height": spec.height,
                                     "format": spec.fmt, "kind": spec.kind})
            best_per_site = {site: asset[site] + photo.paths[site][BEST_KIND[site][1]]
                             for site in PHOTO_SITES if site in photo.paths}
            best = max((v for v in variants if v["format"] == "jpeg"),
                       key=lambda v: (v["width"] * v["height"], v["site"] == "phoenixmls"))
            photos.append({
                "id": photo.id, "properties": photo.properties, "subject": photo.subject,
                "caption": photo.caption, "width": imaging.CANON_W, "height": imaging.CANON_H,
                "sites": photo.sites, "variants": variants, "best_per_site": best_per_site,
                "best": best["url"],
            })
        carousel_urls: dict[str, list[str]] = {}
        for site, mapping in self.carousels.items():
            seen: dict[str, None] = {}  # insertion-ordered set: first appearance wins
            for others in mapping.values():
                for key in others:
                    seen.setdefault(self.carousel_url(site, key, urls))
            carousel_urls[site] = list(seen)
        return {
            "seed": self.seed,
            "sites": dict(urls),
            "thresholds": dict(THRESHOLDS),
            "properties": [{
                "key": p.key, "full_address": p.full_address, "street": p.street,
                "city": p.city, "state": p.state, "zip_code": p.zip_code, "slug": p.slug,
                "ids": dict(p.ids), "on_sites": list(p.on_sites), "facts": dict(p.facts),
                "photo_ids": list(p.photo_ids),
                "photo_ids_per_site": {s: [ph.id for ph in p.site_photos(self, s)]
                                       for s in PHOTO_SITES if s in p.on_sites},
            } for p in self.properties],
            "photos": photos,
            "carousel_urls": carousel_urls,
            "carousels": {s: dict(m) for s, m in self.carousels.items()},
            "hard_negatives": [list(pair) for pair in self.hard_negatives],
            "shared_photos": [ph.id for ph in self.photos.values() if len(ph.properties) > 1],
            "unknown_addresses": [self.unknown_full(u) for u in self.unknown],
        }

    @staticmethod
    def unknown_full(u: dict[str, Any]) -> str:
        return f"{u['street']}, {u['city']}, {u['state']} {u['zip_code']}"

    def carousel_url(self, site: str, key: str, urls: dict[str, str]) -> str:
        """The carousel image of property ``key`` on ``site`` (its first photo, small)."""
        photo = self.first_photo(self.by_key[key], site)
        if site == "zillow":
            return urls["zillow_photos"] + photo.paths["zillow"]["cc_ft_384.jpg"]
        return urls["phoenixmls_photos"] + photo.paths["phoenixmls"]["t"]

    def csv_text(self) -> str:
        """The buyer's sample CSV: the 32 properties, then the 3 addresses no site knows, then
        the generated extra properties (if any)."""
        return csv_text(self.data)


def csv_text(data: dict[str, Any]) -> str:
    """:meth:`Catalog.csv_text` from catalog data (no photos needed)."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["street", "city", "state", "zip_code", "full_address", "price", "beds",
                     "baths", "sqft"])
    props = data["properties"]
    n_sample = int((data.get("extra") or {}).get("sample_properties", len(props)))
    rows = [*props[:n_sample], *data["unknown"], *props[n_sample:]]
    for row in rows:
        facts = row["facts"]
        writer.writerow([row["street"], row["city"], row["state"], row["zip_code"],
                         Catalog.unknown_full(row), facts["price"], facts["beds"],
                         f"{facts['baths']:g}", facts["sqft"]])
    return buf.getvalue()


def load_csv_text(seed: int, cache_dir: Path | None, extra_properties: int = 0,
                  extra_photos: int = 6) -> str:
    """The CSV of ``load_catalog(seed, cache_dir, extra_properties, extra_photos)`` without
    generating the extra properties' photos."""
    from phx_sim import extra

    n, k = extra.check_counts(extra_properties, extra_photos)
    sample = _load_sample(seed, cache_dir)
    if n == 0:
        return sample.csv_text()
    return csv_text(extra.extend(seed, seed_dir(seed, cache_dir), sample.data, n, k,
                                 photos=False))


_LOCK = threading.Lock()
_MEMO: dict[tuple[int, str], Catalog] = {}
_EXTRA_MEMO: dict[tuple[int, str, int, int], Catalog] = {}


def load_catalog(seed: int, cache_dir: Path | None, extra_properties: int = 0,
                 extra_photos: int = 6) -> Catalog:
    """The catalog for ``seed``: from memory, else from ``cache_dir/seed-N/``, else generated
    (and then cached). Corrupt or stale cache files are regenerated, never trusted.

    ``extra_properties`` N > 0 appends N generated properties of ``extra_photos`` K photos
    each (:mod:`phx_sim.extra`); N = 0 is the sample catalog itself, whatever K."""
    from phx_sim import extra

    n, k = extra.check_counts(extra_properties, extra_photos)
    if n == 0:
        return _load_sample(seed, cache_dir)
    sample = _load_sample(seed, cache_dir)
    folder = seed_dir(seed, cache_dir)
    memo_key = (seed, str(folder), n, k)
    with _LOCK:
        if memo_key in _EXTRA_MEMO:
            return _EXTRA_MEMO[memo_key]
    catalog = Catalog(extra.extend(seed, folder, sample.data, n, k))
    with _LOCK:
        # Only the newest few extended catalogs are kept: each may hold thousands of photos.
        while len(_EXTRA_MEMO) >= 4:
            _EXTRA_MEMO.pop(next(iter(_EXTRA_MEMO)))
        return _EXTRA_MEMO.setdefault(memo_key, catalog)


def _load_sample(seed: int, cache_dir: Path | None) -> Catalog:
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**31:
        raise ValueError(f"seed must be an integer in [0, 2**31), got {seed!r}")
    folder = seed_dir(seed, cache_dir)
    memo_key = (seed, str(folder))
    with _LOCK:
        if memo_key in _MEMO:
            return _MEMO[memo_key]
        path = folder / f"catalog-v{CATALOG_VERSION}.json"
        data = None
        try:
            data = json.loads(path.read_text())
            if data.get("version") != CATALOG_VERSION or data.get("seed") != seed:
                data = None
        except (OSError, ValueError, AttributeError):
            data = None
        if data is None:
            data = generate(seed)
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps(data).encode())
        catalog = Catalog(data)
        _MEMO[memo_key] = catalog
        return catalog


def seed_dir(seed: int, cache_dir: Path | None) -> Path:
    base = Path(cache_dir) if cache_dir is not None else Path("data/sim-cache")
    return base.resolve() / f"seed-{seed}"


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file and ``os.replace`` so concurrent readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
