"""The three synthetic generators speak one vocabulary (``pipeline.synthetic.vocabulary``):
every address the sample, a small world and a short anomaly stream write is one the
vocabulary names, and what enrichment (or the stream's own statement) says of it is what
the vocabulary says."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from functools import cache
from typing import Any

from pipeline.cli.demo import DEMO_CONFIG
from pipeline.config import load_settings
from pipeline.ingest.enrich import Enricher
from pipeline.ingest.geoip import parse_ip
from pipeline.ingest.normalize import Normalizer
from pipeline.synthetic import anomaly_stream, sample
from pipeline.synthetic.vocabulary import (
    ADDRESS_NETWORK,
    CLUSTER_PREFIX,
    CORP_VPN_TEST_NET,
    CORP_VPN_TEST_NET_EGRESS,
    NETWORKS,
    STREAM_CLOUD,
    STREAM_CORP,
    STREAM_ISPS,
    VPC_PREFIX,
    Network,
    StatedNetwork,
)
from pipeline.synthetic.world import WorldSpec, generate
from schemas.events import CanonicalEvent
from schemas.redaction import make_token_hasher
from tests.conftest import TEST_HASH_KEY

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
HOSTING_KINDS = ("hosting", "cloud")  # the kinds of NETWORKS that enrichment calls hosting


@cache
def _enricher() -> Enricher:
    return Enricher(load_settings(DEMO_CONFIG).enrich)


def _events(lines: Iterator[bytes], source: str) -> Iterator[CanonicalEvent]:
    normalizer = Normalizer(make_token_hasher(TEST_HASH_KEY), clock=lambda: NOW)
    for n, line in enumerate(lines):
        result = normalizer.normalize(line, f"{source}:{n}")
        assert result.dead_letter is None, line
        yield from result.events


def _network_of(ip: str) -> Network:
    """The one network of the vocabulary with a block that holds ``ip``."""
    holders = [net for net in NETWORKS.values() if any(ip.startswith(block + ".") for block in net.blocks)]
    assert len(holders) == 1, (ip, [net.key for net in holders])
    return holders[0]


def test_the_sample_uses_the_vocabulary_s_addresses_and_enrichment_agrees() -> None:
    enricher = _enricher()
    seen = {}
    for event in _events(iter(sample.render(sample.scenarios()).splitlines()), "sample"):
        net = enricher(event).network
        assert net.ip is not None
        seen[net.ip] = net
    assert set(seen) == {*ADDRESS_NETWORK, CORP_VPN_TEST_NET}  # each named address used, and no other
    for ip, key in ADDRESS_NETWORK.items():
        network, net = NETWORKS[key], seen[ip]
        assert net.geo is not None and (net.geo.country, net.as_org) == (network.country, network.as_org), ip
        assert net.hosting is (network.kind in HOSTING_KINDS), ip
    corp = seen[CORP_VPN_TEST_NET]
    assert corp.egress == CORP_VPN_TEST_NET_EGRESS and corp.as_org is None and not corp.hosting


def test_the_world_s_addresses_lie_in_vocabulary_networks_and_resolve_as_they_say() -> None:
    locator = _enricher().locator
    world = generate(WorldSpec(users=40, seed=11, hours=8))
    kinds: Counter[str] = Counter()
    for event in _events((line for _, line in world.lines()), "world"):
        ip = event.network.ip
        address = parse_ip(ip) if ip is not None else None
        if address is None:  # a service calling on the user's behalf (CloudTrail), no address
            assert event.network.service is not None, event
            continue
        assert ip is not None
        if address.is_private:
            assert ip.startswith((VPC_PREFIX + ".", CLUSTER_PREFIX + ".")), ip
            kinds["private"] += 1
            continue
        network, info = _network_of(ip), locator.lookup(ip)
        assert info.geo is not None and (info.geo.country, info.as_org) == (network.country, network.as_org), ip
        kinds[network.kind] += 1
    assert {"private", "home", "hosting", "cloud"} <= set(kinds), kinds


def _stated_of(network: dict[str, Any]) -> StatedNetwork:
    """The one network the stream states whose prefix (plus one host number) makes ``network``'s address."""
    stated = [*(n for nets in STREAM_ISPS.values() for n in nets), *STREAM_CORP.values(), STREAM_CLOUD]
    ip = network["ip"]
    holders = [n for n in stated if ip.startswith(n.prefix + ".") and ip[len(n.prefix) + 1:].isdigit()]
    assert len(holders) == 1, (ip, holders)
    assert 1 <= int(ip[len(holders[0].prefix) + 1:]) <= 250, ip
    return holders[0]


def test_the_anomaly_stream_states_the_vocabulary_s_networks() -> None:
    lines, _ = anomaly_stream.generate(3, scale=0.05, days=2, attack_days=1, attacks_per_kind=1, low_and_slow=1)
    used: set[StatedNetwork] = set()
    for line in lines:
        network = line["network"]
        stated = _stated_of(network)
        geo = network["geo"]
        assert (network["asn"], network["as_org"], network["hosting"]) == (stated.asn, stated.as_org, stated.hosting)
        assert (geo["country"], geo["city"], geo["lat"], geo["lon"]) == (
            stated.country, stated.city.name, stated.city.lat, stated.city.lon)
        used.add(stated)
    assert STREAM_CLOUD in used and used & set(STREAM_CORP.values()) and len(used) > 5
