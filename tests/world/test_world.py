"""The synthetic world: deterministic by seed, every line read by its adapter, real
address ranges that resolve where they should, plausible travel, and each injected
attack raising exactly its rule with no alert on the benign population."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timezone
from functools import cache

import pytest

from detectors import DETECTORS
from detectors.geo import haversine_km
from detectors.geo_divergence import GeoDivergenceConfig
from pipeline.cli.demo import DEMO_CONFIG, detect
from pipeline.config import load_settings
from pipeline.ingest.enrich import Enricher
from pipeline.ingest.normalize import Normalizer
from pipeline.synthetic.vocabulary import NETWORKS, VPN_EGRESS
from pipeline.synthetic.world import World, WorldSpec, generate, parse_duration
from pipeline.synthetic.world.attacks import EPISODES
from pipeline.synthetic.world.score import Score, score
from schemas.redaction import make_token_hasher
from tests.conftest import TEST_HASH_KEY

SMALL = WorldSpec(users=40, seed=11, hours=8)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


@cache
def small_world() -> World:
    return generate(SMALL)


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], Score]:
    world = small_world()
    with pytest.MonkeyPatch.context() as env:  # module scope: before conftest's per-test secrets fixture
        env.setenv("TOKENWATCH_TOKEN_HASH_KEY", TEST_HASH_KEY.decode())
        alerts, _ = detect(load_settings(DEMO_CONFIG), tmp_path_factory.mktemp("world"), world, progress=False)
    return alerts, score(alerts, world.labels)


def test_same_seed_same_world_other_seed_other_world() -> None:
    again = generate(SMALL)
    assert [line for _, line in again.lines()] == [line for _, line in small_world().lines()]
    assert [label.to_json() for label in again.labels] == [label.to_json() for label in small_world().labels]
    other = generate(WorldSpec(users=40, seed=12, hours=8))
    assert [line for _, line in other.lines()][:50] != [line for _, line in small_world().lines()][:50]


def test_every_line_is_read_by_its_own_adapter() -> None:
    normalizer = Normalizer(make_token_hasher(TEST_HASH_KEY), clock=lambda: NOW)
    formats: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    for n, (fmt, line) in enumerate(small_world().lines()):
        result = normalizer.normalize(line, f"world:{n}")
        assert result.dead_letter is None, (fmt, line, result.dead_letter)
        assert result.format == fmt
        formats[fmt] += 1
        if result.skipped_type is not None:
            skipped[result.skipped_type] += 1
        else:
            assert result.events
    assert set(formats) == {"keycloak", "okta", "entra", "graph", "cloudtrail", "k8s", "gateway"}
    assert set(skipped) <= {"LOGIN_ERROR"}  # failed passwords: a type tokenwatch does not use


def test_the_world_has_the_populations_it_promises() -> None:
    world = generate(WorldSpec(users=300, seed=7, hours=24))
    users = world.users
    assert sum(u.vpn is not None for u in users) > 20
    assert sum(u.device_key is not None for u in users) > 20
    assert sum(u.admin for u in users) > 3 and sum(u.engineer for u in users) > 5
    assert sum(u.trip is not None for u in users) > 3
    assert len({u.home_net for u in users}) > 10
    lines = [line for _, line in world.lines()]
    statuses = Counter(b'"status":401' in line for line in lines)
    assert 0 < statuses[True] < 0.01 * len(lines)  # normal failures at a realistic low rate
    assert any(b"REFRESH_TOKEN_ERROR" in line and b"Session not active" in line for line in lines)  # back from a flight


@pytest.mark.parametrize("key", sorted(NETWORKS))
def test_network_ranges_resolve_to_the_intended_country_and_as(key: str) -> None:
    network, rng, enricher = NETWORKS[key], random.Random(key), _enricher()
    for _ in range(40):
        info = enricher.locator.lookup(network.address(rng))
        assert info.geo is not None and (info.geo.country, info.as_org) == (network.country, network.as_org)


def test_vpn_egress_ranges_are_in_the_demo_allowlist() -> None:
    allowlist = {entry.name: entry.cidrs for entry in load_settings(DEMO_CONFIG).enrich.allowlist}
    for name, (_, prefix) in VPN_EGRESS.items():
        assert allowlist[name] == (f"{prefix}.0/24",)


def test_trips_are_slower_than_the_impossible_travel_threshold() -> None:
    users = [u for u in generate(WorldSpec(users=300, seed=3, hours=24)).users if u.trip]
    assert users
    limit = GeoDivergenceConfig(**load_settings(DEMO_CONFIG).detectors.get("geo_divergence", {})).max_speed_kmh
    for u in users:
        assert u.trip is not None
        km = haversine_km(u.city.lat, u.city.lon, u.trip.city.lat, u.trip.city.lon)
        assert km / ((u.trip.arrive - u.trip.depart) / 3600) < limit


def test_episodes_cover_every_rule() -> None:
    """Every rule-based detection (the anomaly model learns from the world, it has no episode)."""
    rules = {rule.id for cls in DETECTORS.values() for rule in cls.rules if rule.in_demo}
    assert {label.rule for label in small_world().labels} == rules
    assert len(small_world().labels) == len(EPISODES)


def test_each_injected_attack_raises_exactly_its_rule_and_the_benign_population_none(
    scored: tuple[list[dict], Score],
) -> None:
    alerts, result = scored
    assert result.false_positives == []
    for outcome in result.outcomes:
        assert outcome.caught, outcome.label
        assert outcome.also == [], (outcome.label.attack, [a["rule"]["id"] for a in outcome.also])
        assert {a["rule"]["id"] for a in outcome.caught_by} == {outcome.label.rule}
    assert len(alerts) == sum(len(o.caught_by) for o in result.outcomes)


def test_parse_duration() -> None:
    assert parse_duration("90m") == 1.5 and parse_duration("12h") == 12 and parse_duration("2d") == 48
    assert parse_duration("6") == 6
    with pytest.raises(ValueError):
        parse_duration("soon")


@cache
def _enricher() -> Enricher:
    return Enricher(load_settings(DEMO_CONFIG).enrich)

