"""Event enrichment: fill ``event.network`` with geo, AS organisation, whether the
network is a hosting/VPN/Tor network, which cloud provider it belongs to, which
allowlisted egress it is, and which of the operator's egress lists it is on.

An egress list's class also says how far the network's position is the user's:
a relay's only to ``relay_accuracy_km``, an in-flight or provider network's not
at all (accuracy: the whole Earth, so no rule measures travel from it); a
reputation list marks the network as hosting/anonymising.

Geo a source already carries (Okta, Entra) is kept, with its country name turned
into an ISO code and a default accuracy where it has none; the rest is filled
only where the event has nothing. Runs once per event, so results are cached per
(ip, asn, as_org), per whole network, and per network object (adapters memoise
the ``Network`` of a repeated caller, so most events cost one identity probe); an
event that gains nothing is returned as is, one that gains is a shallow copy. The settings and their default lists live in
``pipeline.ingest.enrich_config`` and are re-exported here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from detectors.geo import UNLOCATED_ACCURACY_KM
from pipeline.ingest.egress_lists import EgressLists, ListSource, shipped_sources
from pipeline.ingest.enrich_config import (
    DEFAULT_HOSTING_AS_ORGS,
    DEFAULT_HOSTING_AS_ORGS_EXCLUDE,
    DEFAULT_HOSTING_ASNS,
    DEFAULT_PROVIDER_ASNS,
    DEFAULT_PROVIDER_SERVICES,
    DEFAULT_PROVIDERS,
    AllowlistEntry,
    EgressListSource,
    EnrichConfig,
    provider_lines,
)
from pipeline.ingest.geoip import NOT_AN_IP, IpInfo, IpLocator, MmdbReader, country_code
from pipeline.ingest.netmatch import CidrIndex, word_pattern
from schemas.events import CanonicalEvent, Geo, Network

__all__ = [
    "DEFAULT_HOSTING_AS_ORGS", "DEFAULT_HOSTING_AS_ORGS_EXCLUDE", "DEFAULT_HOSTING_ASNS", "DEFAULT_PROVIDER_ASNS",
    "DEFAULT_PROVIDER_SERVICES", "DEFAULT_PROVIDERS", "AllowlistEntry", "CidrIndex", "EgressListSource",
    "EnrichConfig", "Enricher", "provider_lines",
]



@dataclass(frozen=True)
class OrgFacts:
    """What the organisation names of a network say by the configured words alone."""

    hosting: bool  # a hosting word that no exclusion word cancels
    provider: str | None  # the first provider whose words match an organisation not excluded
    egress: int | None  # the first allowlist entry whose organisation words match


class Enricher:
    """``enricher(event)`` returns the event with its network filled in."""

    def __init__(
        self,
        config: EnrichConfig | None = None,
        *,
        city_reader: MmdbReader | None = None,
        asn_reader: MmdbReader | None = None,
        egress_lists: EgressLists | None = None,
    ) -> None:
        """Readers and lists may be injected; otherwise the configured .mmdb files and
        egress lists are read here, so a wrong path fails at start-up, not on the first event."""
        self.config = config = config or EnrichConfig()
        self.locator = IpLocator(
            city_reader if city_reader is not None else _open_mmdb(config.mmdb_path, "mmdb_path"),
            asn_reader if asn_reader is not None else _open_mmdb(config.asn_mmdb_path, "asn_mmdb_path"),
            default_city_accuracy_km=config.mmdb_default_accuracy_km,
            max_country_accuracy_km=config.max_country_accuracy_km,
        )
        self._hosting_orgs = word_pattern(config.hosting_as_orgs)
        self._hosting_exclude = word_pattern(config.hosting_as_orgs_exclude)
        self._hosting_asns = frozenset(config.hosting_asns)
        self._hosting_cidrs = CidrIndex((c, 0) for c in config.hosting_cidrs)
        entries = config.allowlist
        self._egress_names = [e.name for e in entries]
        self._egress_cidrs = CidrIndex((c, i) for i, e in enumerate(entries) for c in e.cidrs)
        self._egress_asns: dict[int, int] = {}
        for i, entry in enumerate(entries):
            for asn in entry.asns:
                self._egress_asns.setdefault(asn, i)
        self._egress_orgs = [word_pattern(e.as_orgs) for e in entries]
        self._provider_asns: dict[int, str] = {}
        for name, asns in config.provider_asns.items():
            for asn in asns:
                self._provider_asns.setdefault(asn, name)
        self._provider_orgs = [
            (name, pattern) for name, words in config.providers.items()
            if (pattern := word_pattern(words)) is not None
        ]
        self._provider_services: dict[str, str] = {}
        for name, services in config.provider_services.items():
            for service in services:
                key = service.strip().strip(".").casefold()
                if key:
                    self._provider_services.setdefault(key, name)
        self.egress_lists = egress_lists if egress_lists is not None else _load_egress_lists(config)
        self._resolve = functools.lru_cache(maxsize=config.cache_size)(self._compute)
        # What the organisation names alone say, per names: thousands of addresses share an AS's
        # name, and its dozen word patterns cost more than the address's own lookups (a new
        # address from an address-rotating source costs each event a miss of ``_resolve``).
        self._by_orgs: dict[tuple[str, ...], OrgFacts] = {}
        self._networks: dict[tuple[object, ...], Network] = {}
        self._networks_max = config.network_cache_size
        # id(network) -> (that network, enriched): the network is held, so its id is not reused.
        self._by_object: dict[int, tuple[Network, Network]] = {}

    def warm(self) -> None:
        """Load the shipped data now (service start) instead of on the first event."""
        self.locator.warm()

    def cache_info(self) -> functools._CacheInfo:
        return self._resolve.cache_info()

    def __call__(self, event: CanonicalEvent) -> CanonicalEvent:
        lists = self.egress_lists
        if lists is not None and lists.refresh():
            self._resolve.cache_clear()
            self._networks.clear()
            self._by_object.clear()
        net = event.network
        known = self._by_object.get(id(net))
        if known is not None and known[0] is net:
            enriched = known[1]
        else:
            enriched = self._enrich_cached(net)
            if self._networks_max:
                if len(self._by_object) >= self._networks_max:
                    self._by_object.clear()
                self._by_object[id(net)] = (net, enriched)
        return event if enriched is net else _with_network(event, enriched)

    def _enrich_cached(self, net: Network) -> Network:
        """``net`` enriched, from the whole-network cache when its content was seen."""
        if (
            net.ip is None and net.asn is None and net.as_org is None and net.geo is None
            and (net.service is None or net.provider is not None)
        ):
            return net
        # Whole-network cache first: the enriched Network is a function of the
        # network's content, so a repeated (ip, user agent, ...) costs one probe.
        key = tuple(net.__dict__.values())
        enriched = self._networks.get(key)
        if enriched is None:
            enriched = self._enrich_network(net)
            if len(self._networks) >= self._networks_max:
                self._networks.clear()  # misses still hit the per-IP cache
            if self._networks_max:
                self._networks[key] = enriched
        return enriched

    def _enrich_network(self, net: Network) -> Network:
        geo = net.geo
        update: dict[str, object] = {}
        want_provider = net.provider is None
        if want_provider and net.service is not None:
            provider = self._service_provider(net.service)
            if provider is not None:
                update["provider"] = provider
                want_provider = False
        if net.ip is not None or net.asn is not None or net.as_org is not None:
            update.update(self._resolve(
                net.ip, net.asn, net.as_org,
                geo is None or (geo.country is None and geo.lat is None),
                net.hosting is None,
                net.egress is None,
                want_provider,
                net.net_class is None,
            ))
        if geo is not None and "geo" not in update:
            fixed = self._event_geo(geo)
            if fixed is not geo:
                update["geo"] = fixed
        net_class = update.get("net_class", net.net_class)
        if isinstance(net_class, str):
            position = update.get("geo", geo)
            self._apply_class(net_class, update, position if isinstance(position, Geo) else None)
        return net.model_copy(update=update) if update else net

    def _apply_class(self, net_class: str, update: dict[str, object], geo: Geo | None) -> None:
        """What the class says about the position and the network (module docstring)."""
        if net_class == "reputation":
            update["hosting"] = True
            return
        if geo is None:
            return
        accuracy = self.config.relay_accuracy_km if net_class == "relay" else UNLOCATED_ACCURACY_KM
        if geo.accuracy_km is None or geo.accuracy_km < accuracy:
            update["geo"] = geo.model_copy(update={"accuracy_km": accuracy})

    def _event_geo(self, geo: Geo) -> Geo:
        """A source's geo with its country as an ISO code and an accuracy."""
        changes: dict[str, object] = {}
        if geo.country is not None:
            country = _country(geo.country)
            if country != geo.country:
                changes["country"] = country
        if geo.accuracy_km is None and geo.lat is not None and geo.lon is not None:
            changes["accuracy_km"] = self.config.event_geo_accuracy_km
        return geo.model_copy(update=changes) if changes else geo

    def _service_provider(self, service: str) -> str | None:
        """Provider of "ec2.amazonaws.com": the name itself, then each parent domain."""
        name = service.strip().strip(".").casefold()
        while name:
            provider = self._provider_services.get(name)
            if provider is not None:
                return provider
            _, _, name = name.partition(".")
        return None

    def _compute(
        self, ip: str | None, asn: int | None, org: str | None,
        want_geo: bool, want_hosting: bool, want_egress: bool, want_provider: bool, want_class: bool,
    ) -> dict[str, object]:
        """The network fields to set; shared between events, so never mutated."""
        info = self.locator.lookup(ip) if ip is not None else NOT_AN_IP
        update: dict[str, object] = {}
        if asn is None and info.asn is not None:
            asn = update["asn"] = info.asn
        orgs = tuple(o for o in (org, info.as_org) if o)
        if want_geo and info.geo is not None:
            update["geo"] = info.geo
        if org is None and info.as_org is not None:
            update["as_org"] = info.as_org
        if want_hosting:
            hosting = self._is_hosting(info, asn, orgs)
            if hosting is not None:
                update["hosting"] = hosting
        if want_egress:
            egress = self._egress(info, asn, orgs)
            if egress is not None:
                update["egress"] = egress
        if want_provider:
            provider = self._provider(info, asn, orgs)
            if provider is not None:
                update["provider"] = provider
        if want_class and self.egress_lists is not None:
            found = self.egress_lists.classify(info.address, asn, orgs)
            if found is not None:
                update["net_class"], update["net_list"] = found
        return update

    def _is_hosting(self, info: IpInfo, asn: int | None, orgs: tuple[str, ...]) -> bool | None:
        """None when nothing identifies the network (a service name, garbage)."""
        if info.address is None and asn is None and not orgs:
            return None
        if info.address is not None:
            if self._hosting_cidrs.lookup(info.address) is not None:
                return True
            if not info.public:
                return False
        if asn is not None and asn in self._hosting_asns:
            return True
        return self._org_facts(orgs).hosting

    def _provider(self, info: IpInfo, asn: int | None, orgs: tuple[str, ...]) -> str | None:
        """By AS number first, then by the first organisation word that matches."""
        if info.address is not None and not info.public:
            return None
        if asn is not None:
            provider = self._provider_asns.get(asn)
            if provider is not None:
                return provider
        return self._org_facts(orgs).provider

    def _egress(self, info: IpInfo, asn: int | None, orgs: tuple[str, ...]) -> str | None:
        """Name of the first allowlist entry (in configured order) that matches."""
        if not self._egress_names:
            return None
        best = len(self._egress_names)
        if info.address is not None:
            hit = self._egress_cidrs.lookup(info.address)
            if hit is not None:
                best = hit
        if asn is not None:
            best = min(best, self._egress_asns.get(asn, best))
        by_org = self._org_facts(orgs).egress
        if by_org is not None:
            best = min(best, by_org)
        return self._egress_names[best] if best < len(self._egress_names) else None

    def _org_facts(self, orgs: tuple[str, ...]) -> OrgFacts:
        """What the configured organisation words say of ``orgs``, memoised per names."""
        found = self._by_orgs.get(orgs)
        if found is None:
            if len(self._by_orgs) >= self.config.cache_size:
                self._by_orgs.clear()
            found = self._by_orgs[orgs] = self._read_orgs(orgs)
        return found

    def _read_orgs(self, orgs: tuple[str, ...]) -> OrgFacts:
        hosting_words, exclude = self._hosting_orgs, self._hosting_exclude
        hosting = hosting_words is not None and any(
            hosting_words.search(o) and not (exclude is not None and exclude.search(o)) for o in orgs
        )
        provider: str | None = None
        for org in orgs:
            if exclude is not None and exclude.search(org):
                continue
            provider = next((name for name, pattern in self._provider_orgs if pattern.search(org)), None)
            if provider is not None:
                break
        egress = next((i for i, pattern in enumerate(self._egress_orgs)
                       if pattern is not None and any(pattern.search(o) for o in orgs)), None)
        return OrgFacts(hosting, provider, egress)


_set = object.__setattr__


def _with_network(event: CanonicalEvent, network: Network) -> CanonicalEvent:
    """``event`` with ``network`` in place of its own: what ``model_copy(update=...)`` makes
    (a shallow copy, no validation: the network is an already valid ``Network``), at a
    fraction of its cost. The copy shares the original's immutable field values."""
    copy = object.__new__(type(event))
    fields = event.__dict__.copy()
    fields["network"] = network
    _set(copy, "__dict__", fields)
    _set(copy, "__pydantic_fields_set__", event.__pydantic_fields_set__ | {"network"})
    _set(copy, "__pydantic_extra__", event.__pydantic_extra__)  # None: extra fields are forbidden
    _set(copy, "__pydantic_private__", event.__pydantic_private__)  # None: no private attributes
    return copy


def _country(value: str) -> str:
    """ISO 3166 alpha-2 for a country name or alpha-3 code; a two-letter code is
    upper-cased ("UK" -> "GB"); anything unknown is kept as given."""
    text = value.strip()
    if len(text) == 2 and text.isalpha():
        code = text.upper()
        return "GB" if code == "UK" else code
    if len(text) > 2:
        return country_code(text) or value
    return value


def _load_egress_lists(config: EnrichConfig) -> EgressLists | None:
    sources = [
        *shipped_sources(config.shipped_egress_lists),
        *(ListSource(s.name, s.net_class, s.path) for s in config.egress_lists),
    ]
    if not sources:
        return None
    try:
        return EgressLists(
            sources, reload_interval_s=config.egress_reload_interval_s,
            max_bytes=config.egress_list_max_bytes, max_entries=config.egress_list_max_entries,
        )
    except ValueError as exc:
        raise ValueError(f"enrich.egress_lists: {exc}") from None


def _open_mmdb(path: Path | None, field: str) -> MmdbReader | None:
    if path is None:
        return None
    import maxminddb

    try:
        return maxminddb.open_database(str(path))
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise ValueError(f"enrich.{field} {str(path)!r} cannot be opened: {exc}") from None
